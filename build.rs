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
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    println!(
        "cargo:rustc-env=RECBENCH_GIT_COMMIT={commit}{}",
        if dirty { "-dirty" } else { "" }
    );
}

/// Compiles src/backend/torch_quant.cpp (PyTorch's dynamic int8 linear through the dispatcher,
/// and the one-pass quantize and rescale around `_int_mm`)
/// against the libtorch tch builds with, with the same flags torch-sys uses.
#[cfg(feature = "torch")]
fn torch_quant(lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=src/backend/torch_quant.cpp");
    let root = lib.parent().expect("libtorch's lib folder has a parent");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        // The per-row loops must compute the bits of the ATen chains they replace, in every
        // instruction-set version (torch_quant.cpp): no fused multiply-adds.
        .flag("-ffp-contract=off")
        .flag(format!(
            "-D_GLIBCXX_USE_CXX11_ABI={}",
            std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into())
        ))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // at::parallel_for is inline in libtorch's headers: an OpenMP `parallel` pragma
        // (AT_PARALLEL_OPENMP) compiled here. Without -fopenmp the pragma is ignored and every
        // "parallel" pass of the shim runs on the calling thread alone.
        .flag("-fopenmp")
        .file("src/backend/torch_quant.cpp")
        .compile("recbench_torch_quant");
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
        let status = Command::new(&nvcc)
            .args(["--ptx", &format!("-arch=compute_{cap}"), "-O3", &src, "-o"])
            .arg(out_dir.join(format!("{name}.ptx")))
            .status()
            .unwrap_or_else(|e| {
                panic!("{nvcc} (for {src}): {e}; set NVCC or put nvcc on the PATH")
            });
        assert!(status.success(), "{nvcc} could not compile {src}");
    }
}

#[cfg(not(feature = "cuda"))]
fn candle_kernels() {}
