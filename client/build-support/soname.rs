// Shared by the build scripts of the C libraries (client/build.rs, client/iothaddr-c/build.rs),
// through include!(): their SONAME, and the SONAME link in cargo's profile directory.

/// Gives the cdylib `file` (e.g. `libioth.so`) the SONAME `soname` (`libioth.so.0`), the
/// original library's, so that programs linked against either record the same `NEEDED` entry
/// and run on both. A program linked in the build tree (`-L target/<profile> -lioth`) then looks
/// for `soname` next to `file`: that name is made here, as a symlink in cargo's profile directory
/// (`OUT_DIR` is `<profile>/build/<crate>-<hash>/out`). `make install` lays out the versioned
/// file and both links itself.
fn soname(file: &str, soname: &str) {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let Some(profile) = out.ancestors().nth(3) else {
        return;
    };
    let link = profile.join(soname);
    if std::fs::read_link(&link).is_err() {
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink(file, &link) {
            println!("cargo:warning=cannot link {}: {e}", link.display());
        }
    }
}
