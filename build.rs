//! Records build facts the results file reports: runtime crate versions (from Cargo.lock) and
//! the git commit of the source tree. With the `torch` feature, also gives every binary of this
//! package an rpath to libtorch (dependent crates do not inherit tch's own rpath), so it runs
//! without LD_LIBRARY_PATH.

use std::process::Command;

fn locked_version(lock: &str, name: &str) -> String {
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle)
        .map(|i| {
            let rest = &lock[i + needle.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_string()
        })
        .unwrap_or_else(|| "not in this build".to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    // Every source edit reruns this script, so the commit's dirty mark (below) is never stale;
    // the C++ and CUDA compiles are skipped when their inputs did not change (`Stamp`).
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.toml");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    for (var, krate) in [
        ("RECBENCH_CANDLE_VERSION", "candle-core"),
        ("RECBENCH_ORT_VERSION", "ort"),
        ("RECBENCH_TCH_VERSION", "tch"),
    ] {
        println!("cargo:rustc-env={var}={}", locked_version(&lock, krate));
    }
    // Set by torch-sys (links = "tch") for crates that depend on it directly; only present
    // when the `torch` feature is on.
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
        torch_quant(std::path::Path::new(&lib));
    }
    candle_kernels();
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    // A tree whose code differs from the commit (the files this script watches) is
    // `<commit>-dirty-<hash of the diff>`: caches of kernel and sub-batch decisions key on
    // this string, so two different edits of one commit must not share them.
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .args(["--", "src", "build.rs", "Cargo.toml", "Cargo.lock"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| o.stdout)
            .unwrap_or_default()
    };
    let mut diff = git(&["diff", "HEAD", "--no-ext-diff", "--binary"]);
    // Source files not yet added to git count with their contents.
    let untracked = git(&["ls-files", "--others", "--exclude-standard"]);
    for file in String::from_utf8_lossy(&untracked).lines() {
        diff.extend(file.as_bytes());
        diff.extend(std::fs::read(file).unwrap_or_default());
    }
    let dirty = if diff.is_empty() {
        String::new()
    } else {
        format!("-dirty-{:08x}", fnv1a(&diff) as u32)
    };
    println!("cargo:rustc-env=RECBENCH_GIT_COMMIT={commit}{dirty}");
}

/// FNV-1a, 64 bits: a hash that is the same in every build of this script.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The record of what an output of this script was made from: the contents of its input files
/// and its recipe (compiler, flags, libraries), hashed, in a `.stamp` file beside it. An output
/// whose stamp matches is not made again.
#[cfg(any(feature = "torch", feature = "cuda"))]
struct Stamp {
    path: std::path::PathBuf,
    value: String,
    fresh: bool,
}

#[cfg(any(feature = "torch", feature = "cuda"))]
impl Stamp {
    fn new(output: &std::path::Path, inputs: &[&str], recipe: &str) -> Stamp {
        let mut bytes = recipe.as_bytes().to_vec();
        for input in inputs {
            bytes.extend(std::fs::read(input).unwrap_or_default());
        }
        let path = output.with_extension("stamp");
        let value = format!("{:016x}", fnv1a(&bytes));
        let fresh = output.exists() && std::fs::read_to_string(&path).ok().as_ref() == Some(&value);
        Stamp { path, value, fresh }
    }

    /// After the output was made.
    fn record(&self) {
        std::fs::write(&self.path, &self.value).expect("OUT_DIR is writable");
    }
}

/// Compiles src/backend/torch_quant.cpp (PyTorch's dynamic int8 linear through the dispatcher,
/// and the one-pass quantize and rescale around `_int_mm`)
/// against the libtorch tch builds with, with the same flags torch-sys uses.
#[cfg(feature = "torch")]
fn torch_quant(lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=src/backend/torch_quant.cpp");
    let root = lib.parent().expect("libtorch's lib folder has a parent");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = "src/backend/torch_quant.cpp";
    let recipe = format!("{}|{abi}|{:?}", root.display(), std::env::var("CXX"));
    let stamp = Stamp::new(
        &out_dir.join("librecbench_torch_quant.a"),
        &[src, "build.rs"],
        &recipe,
    );
    if !stamp.fresh {
        cc::Build::new()
            .cpp(true)
            .pic(true)
            .warnings(false)
            // The link lines are printed below, whether or not this compile runs.
            .cargo_metadata(false)
            .include(root.join("include"))
            .include(root.join("include/torch/csrc/api/include"))
            .flag("-std=c++17")
            // The per-row loops must compute the bits of the ATen chains they replace, in every
            // instruction-set version (torch_quant.cpp): no fused multiply-adds.
            .flag("-ffp-contract=off")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .flag("-DGLOG_USE_GLOG_EXPORT")
            // at::parallel_for is inline in libtorch's headers: an OpenMP `parallel` pragma
            // (AT_PARALLEL_OPENMP) compiled here. Without -fopenmp the pragma is ignored and
            // every "parallel" pass of the shim runs on the calling thread alone.
            .flag("-fopenmp")
            .file(src)
            .compile("recbench_torch_quant");
        stamp.record();
    }
    println!("cargo:rustc-link-search=native={}", out_dir.display());
    println!("cargo:rustc-link-lib=static=recbench_torch_quant");
    println!("cargo:rustc-link-lib=stdc++");
    // The OpenMP runtime libtorch itself loads (the wheel bundles it), so the shim's parallel
    // regions share libtorch's thread pool; a system libgomp where libtorch has none.
    if lib.join("libgomp.so.1").exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
    } else {
        println!("cargo:rustc-link-lib=dylib=gomp");
    }
}

#[cfg(not(feature = "torch"))]
fn torch_quant(_lib: &std::path::Path) {}

/// Compiles the candle backend's CUDA kernels (src/backend/candle_topk.cu, candle_layers.cu) to
/// PTX, with the nvcc candle-kernels builds with (`NVCC`, else `nvcc` on the PATH) for
/// `CUDA_COMPUTE_CAP` (80 where unset: the driver compiles the PTX further for newer GPUs).
#[cfg(feature = "cuda")]
fn candle_kernels() {
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in ["candle_topk", "candle_layers"] {
        let src = format!("src/backend/{name}.cu");
        println!("cargo:rerun-if-changed={src}");
        let ptx = out_dir.join(format!("{name}.ptx"));
        let stamp = Stamp::new(&ptx, &[&src, "build.rs"], &format!("{nvcc}|{cap}"));
        if stamp.fresh {
            continue;
        }
        let status = Command::new(&nvcc)
            .args(["--ptx", &format!("-arch=compute_{cap}"), "-O3", &src, "-o"])
            .arg(&ptx)
            .status()
            .unwrap_or_else(|e| {
                panic!("{nvcc} (for {src}): {e}; set NVCC or put nvcc on the PATH")
            });
        assert!(status.success(), "{nvcc} could not compile {src}");
        stamp.record();
    }
}

#[cfg(not(feature = "cuda"))]
fn candle_kernels() {}
