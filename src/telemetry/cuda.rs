//! Whether this host can run CUDA at all: the NVIDIA driver library (`libcuda.so.1`) loaded at
//! run time, initialised, and asked for its device count. No CUDA toolkit is needed for this,
//! and a host without a driver is an answer, not an error. `RECBENCH_CUDA_DRIVER` names another
//! library file (tests give one that does not exist, so what they expect does not depend on
//! the host).

use std::ffi::{CStr, CString};

/// The number of CUDA devices the driver sees, or why CUDA cannot run here.
pub fn driver() -> Result<usize, String> {
    let lib = std::env::var("RECBENCH_CUDA_DRIVER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "libcuda.so.1".into());
    let name = CString::new(lib.clone()).map_err(|_| format!("bad library name {lib:?}"))?;
    // SAFETY: dlopen/dlsym/dlerror with a valid C string; the handle is kept for the process
    // (the driver library is never unloaded), and the symbols are called with the C ABI the
    // CUDA driver API documents: cuInit(unsigned int), cuDeviceGetCount(int*).
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            let why = libc::dlerror();
            let why = if why.is_null() {
                String::new()
            } else {
                CStr::from_ptr(why).to_string_lossy().into_owned()
            };
            return Err(format!("no NVIDIA driver ({lib} cannot be loaded: {why})"));
        }
        let sym = |s: &str| {
            let c = CString::new(s).expect("symbol names have no NUL");
            libc::dlsym(handle, c.as_ptr())
        };
        let (init, count) = (sym("cuInit"), sym("cuDeviceGetCount"));
        if init.is_null() || count.is_null() {
            return Err(format!("{lib} is not an NVIDIA driver library (no cuInit)"));
        }
        let init: extern "C" fn(u32) -> i32 = std::mem::transmute(init);
        let count: extern "C" fn(*mut i32) -> i32 = std::mem::transmute(count);
        let rc = init(0);
        if rc != 0 {
            return Err(format!(
                "the NVIDIA driver did not initialise (cuInit error {rc}: no device, or a driver \
                 older than the runtime)"
            ));
        }
        let mut n = 0i32;
        let rc = count(&mut n);
        if rc != 0 || n <= 0 {
            return Err("the NVIDIA driver sees no CUDA device".into());
        }
        Ok(n as usize)
    }
}

/// Opens the shared library `path` with its symbols global (for libraries that register
/// themselves with one already loaded, as libtorch_cuda does with libtorch), or says why not.
pub fn open_global(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: dlopen with a valid C string; the handle is kept for the life of the process.
    unsafe {
        if libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL).is_null() {
            let why = libc::dlerror();
            return Err(if why.is_null() {
                "dlopen failed".into()
            } else {
                CStr::from_ptr(why).to_string_lossy().into_owned()
            });
        }
    }
    Ok(())
}

/// Finds the shared library `lib<stem>.so` (unversioned, or with one of `majors`) on the
/// library path as the dynamic loader would, returning the name that opened; else why not.
/// What a runtime that opens its CUDA libraries lazily (cudarc, for candle) will need.
pub fn find_library(stem: &str, majors: &[&str]) -> Result<String, String> {
    let names: Vec<String> = std::iter::once(format!("lib{stem}.so"))
        .chain(majors.iter().map(|m| format!("lib{stem}.so.{m}")))
        .collect();
    for name in &names {
        let c = CString::new(name.as_str()).map_err(|e| e.to_string())?;
        // SAFETY: dlopen with a valid C string; a library found stays loaded (the runtime that
        // needs it opens it again).
        if !unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) }.is_null() {
            return Ok(name.clone());
        }
    }
    Err(format!(
        "none of {} is on the library path",
        names.join(", ")
    ))
}

/// [`driver`], probed once per process (planning asks for every CUDA run).
pub fn devices() -> Result<usize, String> {
    static DEVICES: std::sync::OnceLock<Result<usize, String>> = std::sync::OnceLock::new();
    DEVICES.get_or_init(driver).clone()
}

/// One line on this host's CUDA: the device count, or why there is none.
pub fn status() -> String {
    match devices() {
        Ok(n) => format!("NVIDIA driver with {n} CUDA device(s)"),
        Err(why) => why,
    }
}
