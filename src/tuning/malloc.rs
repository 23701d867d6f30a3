//! Freed memory stays in the measuring process, so a forward pass reuses its buffers instead of
//! faulting fresh pages in on every call.
//!
//! glibc's malloc serves large blocks with `mmap` and returns the top of its heap to the kernel
//! once more than `M_TRIM_THRESHOLD` is free there. Both thresholds move at run time, and an
//! encoder's allocation pattern (dozens of tensors of 0.1–25 MiB per forward, freed in another
//! order than allocated) keeps pushing memory back: the next forward pays a page fault and a
//! zeroed page for every 4 KiB it touches again. On the 2-vCPU AMD EPYC VM of
//! docs/benchmarks/ (torch int8, MiniLM, batch 8), kernel page-fault handling was 20% of the
//! worker's samples under `perf`; with the thresholds below, 2%. PyTorch eager in Python (fp32,
//! batch 1, same VM) spent 0.3% of its samples in page faults; why glibc's moving thresholds
//! settle there and not in a worker was not pinned down: the fix does not depend on it.
//!
//! Workers and OpenMP probes call [`keep_freed_memory`] first thing. It fixes `M_MMAP_THRESHOLD`
//! at glibc's largest (32 MiB: larger blocks are still mapped and unmapped per call) and turns
//! trimming off. A user's `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or malloc tunable is
//! kept as it is. The run's peak resident memory is what it was: the blocks kept are the ones
//! the next iteration allocates again.

/// glibc's upper bound for `M_MMAP_THRESHOLD` on 64-bit targets (`DEFAULT_MMAP_THRESHOLD_MAX`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;

/// The environment through which a user sets glibc's malloc thresholds.
const USER_ENV: [&str; 2] = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"];

/// The glibc tunable that makes malloc ask the kernel for transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`) on the memory it maps (glibc 2.35 and later).
pub const HUGETLB_TUNABLE: &str = "glibc.malloc.hugetlb=1";

/// Set beside `GLIBC_TUNABLES=`[`HUGETLB_TUNABLE`] for a process whose huge pages recbench
/// chose (see `hugepages.rs`): that tunable is then recbench's, not the user's.
pub const HUGETLB_CHOSEN_ENV: &str = "RECBENCH_MALLOC_HUGETLB";

/// The user's `GLIBC_TUNABLES`, when it sets malloc's (recbench's own huge-page setting aside).
pub fn user_tunables() -> Option<String> {
    users(
        std::env::var("GLIBC_TUNABLES").ok().as_deref(),
        std::env::var_os(HUGETLB_CHOSEN_ENV).is_some(),
    )
}

fn users(tunables: Option<&str>, chosen: bool) -> Option<String> {
    let v = tunables?;
    (v.contains("glibc.malloc.") && !(chosen && ours(v))).then(|| format!("GLIBC_TUNABLES={v}"))
}

fn ours(tunables: &str) -> bool {
    tunables == HUGETLB_TUNABLE
}

/// Whether this process runs with recbench's huge-page tunable.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn huge_pages_chosen() -> bool {
    std::env::var_os(HUGETLB_CHOSEN_ENV).is_some()
        && std::env::var("GLIBC_TUNABLES").is_ok_and(|v| ours(&v))
}

/// Sets the thresholds (see the module doc) unless the user set them, and returns the note
/// for the run's results; `None` where the C library is not glibc.
pub fn keep_freed_memory() -> Option<String> {
    let mut user = super::set_in_env(&USER_ENV);
    user.extend(user_tunables());
    if !user.is_empty() {
        return Some(format!(
            "malloc: the user's settings kept ({})",
            user.join(", ")
        ));
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> Option<String> {
    // SAFETY: mallopt only changes malloc's parameters; glibc takes its own arena locks.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
    };
    let huge = if huge_pages_chosen() {
        format!("; malloc asks for transparent huge pages (GLIBC_TUNABLES={HUGETLB_TUNABLE})")
    } else {
        String::new()
    };
    Some(if ok {
        format!(
            "malloc: freed memory kept in the process (glibc M_MMAP_THRESHOLD 32 MiB, trimming \
             off), so buffers of up to 32 MiB are reused across iterations instead of faulted in \
             again{huge}"
        )
    } else {
        "malloc: glibc refused the thresholds; its defaults apply".into()
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> Option<String> {
    None
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far.
    fn thread_faults() -> i64 {
        // SAFETY: getrusage writes into the zeroed struct we pass.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut u), 0);
            u.ru_minflt
        }
    }

    /// One "forward pass": four 8 MiB buffers, each written to, then all freed. Without the
    /// thresholds, glibc trims the 32 MiB freed at the top of the heap (more than twice the
    /// largest block it has seen) and every pass faults its 8,192 pages in again.
    fn pass() {
        let bufs: Vec<Vec<u8>> = (0..4).map(|i| vec![i as u8 + 1; 8 << 20]).collect();
        std::hint::black_box(&bufs);
    }

    #[test]
    fn only_recbench_own_huge_page_tunable_is_not_the_users() {
        assert_eq!(users(None, false), None);
        assert_eq!(users(Some("glibc.rtld.nns=2"), false), None);
        assert_eq!(users(Some(HUGETLB_TUNABLE), true), None);
        // Without the marker, or with more than recbench sets, it is the user's.
        for (t, chosen) in [
            (HUGETLB_TUNABLE, false),
            ("glibc.malloc.hugetlb=1:glibc.malloc.arena_max=1", true),
            ("glibc.malloc.arena_max=1", false),
        ] {
            assert_eq!(
                users(Some(t), chosen).as_deref(),
                Some(format!("GLIBC_TUNABLES={t}").as_str())
            );
        }
    }

    #[test]
    fn repeated_passes_reuse_their_memory() {
        if USER_ENV.iter().any(|k| std::env::var(k).is_ok()) {
            eprintln!("skipped: the user set glibc's malloc thresholds");
            return;
        }
        // On a thread of its own, so the count is this test's alone.
        let faults = std::thread::spawn(|| {
            let note = keep_freed_memory().unwrap();
            assert!(note.contains("32 MiB"), "{note}");
            pass();
            let before = thread_faults();
            for _ in 0..5 {
                pass();
            }
            thread_faults() - before
        })
        .join()
        .unwrap();
        // 5 passes × 8,192 pages when memory goes back to the kernel; a few when it is reused.
        assert!(faults < 2_000, "{faults} page faults in 5 passes");
    }
}
