//! Two NVRTCs on one machine, without NVRTC: the tests build tiny fake libraries with the system C
//! compiler (exporting the functions `nvrtc_lib` resolves, reporting chosen versions and
//! architectures) and check that the one discovery chose is the one that answers, and that a
//! different one found by name is reported. Where no C compiler exists they return early; the
//! comparison itself is tested unconditionally in `nvrtc_shadow`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::discovery;
use super::nvrtc_lib::NvrtcLib;
use super::nvrtc_shadow::Identity;

const FAKE: &str = r#"
typedef struct p* prog;
int nvrtcVersion(int* major, int* minor) { *major = MAJOR; *minor = MINOR; return 0; }
const char* nvrtcGetErrorString(int rc) { return rc ? "fake failure" : "NVRTC_SUCCESS"; }
static const int archs[] = { ARCHS };
int nvrtcGetNumSupportedArchs(int* n) { *n = sizeof archs / sizeof archs[0]; return 0; }
int nvrtcGetSupportedArchs(int* out) {
    for (unsigned i = 0; i < sizeof archs / sizeof archs[0]; i++) out[i] = archs[i];
    return 0;
}
int nvrtcCreateProgram(prog* p, const char* s, const char* n, int h, const char** a,
                       const char** b) { *p = 0; return 0; }
int nvrtcDestroyProgram(prog* p) { return 0; }
int nvrtcCompileProgram(prog p, int n, const char** o) { return 6; }
int nvrtcGetProgramLogSize(prog p, unsigned long* n) { *n = 5; return 0; }
int nvrtcGetProgramLog(prog p, char* l) { l[0]='f'; l[1]='a'; l[2]='k'; l[3]='e'; l[4]=0; return 0; }
int nvrtcGetCUBINSize(prog p, unsigned long* n) { return 7; }
int nvrtcGetCUBIN(prog p, char* c) { return 7; }
int nvrtcGetPTXSize(prog p, unsigned long* n) { return 7; }
int nvrtcGetPTX(prog p, char* c) { return 7; }
"#;

/// Builds `dir/file` reporting NVRTC `version` and `archs` with soname `soname`; `None` where
/// there is no C compiler.
fn fake(dir: &Path, file: &str, soname: &str, version: (i32, i32), archs: &str) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let src = dir.join(format!("{file}.c"));
    std::fs::write(&src, FAKE).ok()?;
    let out = dir.join(file);
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(format!("-Wl,-soname,{soname}"))
        .arg(format!("-DMAJOR={}", version.0))
        .arg(format!("-DMINOR={}", version.1))
        .arg(format!("-DARCHS={archs}"))
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(out)
}

/// The chosen library (a wheel's `libnvrtc.so.12`, NVRTC 12.9) and a toolkit's unversioned
/// `libnvrtc.so` (NVRTC 11.1) in separate folders. Only a child process may load them with
/// their real sonames: while loaded, the loader would hand them to any by-name open of
/// `libnvrtc.so.12` in this process, i.e. to other tests' discovery.
fn two_copies(tag: &str, real_sonames: bool) -> Option<(PathBuf, PathBuf)> {
    let root = std::env::temp_dir().join(format!("threadx-nvrtc-{tag}-{}", std::process::id()));
    let soname = |real: &'static str, fake: &'static str| if real_sonames { real } else { fake };
    let wheel = fake(
        &root.join("wheel"),
        "libnvrtc.so.12",
        soname("libnvrtc.so.12", "libthreadx-fake-wheel.so"),
        (12, 9),
        "75, 80, 90",
    )?;
    let toolkit = fake(
        &root.join("toolkit"),
        "libnvrtc.so",
        soname("libnvrtc.so", "libthreadx-fake-toolkit.so"),
        (11, 1),
        "52, 80",
    )?;
    Some((wheel, toolkit))
}

#[test]
fn the_library_discovery_chose_answers_and_another_found_by_name_is_reported() {
    let Some((wheel, toolkit)) = two_copies("inproc", false) else {
        eprintln!("no C compiler: the fake NVRTCs cannot be built");
        return;
    };
    let other = NvrtcLib::open(&toolkit).expect("the fake toolkit NVRTC opens");
    let by_name = || Some(Identity::of(&other, &toolkit.display().to_string()));
    let n = discovery::open_nvrtc_from(std::slice::from_ref(&wheel), by_name)
        .expect("the fake wheel NVRTC opens");
    assert_eq!(n.path, wheel.display().to_string());
    assert_eq!(n.version, (12, 9));
    assert_eq!(n.archs, vec![75, 80, 90]);
    let mismatch = n.mismatch.as_deref().expect("the toolkit copy is reported");
    assert!(
        mismatch.contains(&toolkit.display().to_string()),
        "{mismatch}"
    );
    assert!(mismatch.contains("NVRTC 11.1"), "{mismatch}");
    assert!(mismatch.contains("NVRTC 12.9"), "{mismatch}");
    // Compiling goes to the chosen library too: the fake's failure code and log come back.
    let e = n
        .lib
        .compile("x", "x.cu", &[], super::nvrtc_lib::Output::Cubin)
        .unwrap_err()
        .to_string();
    assert!(e.contains("fake failure (6)") && e.contains("fake"), "{e}");
    // The same library found by name is no mismatch.
    let same = NvrtcLib::open(&wheel).unwrap();
    let by_name = || Some(Identity::of(&same, "libnvrtc.so.12"));
    let n = discovery::open_nvrtc_from(std::slice::from_ref(&wheel), by_name).unwrap();
    assert_eq!(n.mismatch, None);
    remove_root(&wheel);
}

/// Removes the folder holding both fakes (a loaded library stays mapped after its file goes).
fn remove_root(wheel: &Path) {
    if let Some(root) = wheel.parent().and_then(Path::parent) {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// In a child process (the loader path is fixed at start), with the toolkit copy first on
/// `LD_LIBRARY_PATH` and `THREADX_NVRTC` naming the wheel's: the status reports the wheel's
/// version (cudarc's bindings would have answered with the toolkit's) and the mismatch.
#[test]
fn the_status_names_the_nvrtc_that_compiles_and_the_one_the_loader_prefers() {
    const CHILD: &str = "THREADX_TEST_NVRTC_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let st = discovery::status();
        assert_eq!(st.nvrtc_version.as_deref(), Some("12.9"), "{st:?}");
        let lib = st.nvrtc_library.clone().unwrap_or_default();
        assert!(lib.ends_with("wheel/libnvrtc.so.12"), "{st:?}");
        assert_eq!(st.nvrtc_archs, vec![75, 80, 90]);
        let mismatch = st.nvrtc_mismatch.clone().unwrap_or_default();
        assert!(
            mismatch.contains("toolkit/libnvrtc.so (NVRTC 11.1)"),
            "{st:?}"
        );
        // The premise: cudarc's bindings, which discovery used to call, answer from the toolkit
        // copy, so the status used to say 11.1 next to the wheel's path.
        let (mut major, mut minor) = (0, 0);
        // SAFETY: the fake library exports nvrtcVersion with its real signature.
        unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
        assert_eq!((major, minor), (11, 1));
        return;
    }
    let Some((wheel, toolkit)) = two_copies("child", true) else {
        eprintln!("no C compiler: the fake NVRTCs cannot be built");
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "exec::cuda::nvrtc_fake_tests::the_status_names_the_nvrtc_that_compiles_and_the_one_the_loader_prefers",
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("THREADX_NVRTC", &wheel)
        .env("LD_LIBRARY_PATH", toolkit.parent().unwrap())
        .env_remove("THREADX_SIMULATED_GPUS")
        .env_remove("THREADX_GPU")
        .output()
        .expect("the test binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    remove_root(&wheel);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
}
