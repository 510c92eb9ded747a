//! Generates include/tetherdb.h from the `extern "C"` functions in src/ffi.
//! The header is committed; CI checks that the build leaves it unchanged.
//!
//! On Linux it also gives the shared library its soname,
//! libtetherdb.so.MAJOR (MAJOR from Cargo.toml's version, as the header's
//! TETHER_VERSION_MAJOR), and links that name to libtetherdb.so beside it,
//! so that a program linked against target/<profile> runs as one linked
//! against an installed copy does (scripts/install.sh installs the library
//! as libtetherdb.so.MAJOR.MINOR.PATCH with the same two links).

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    let crate_dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let crate_dir = Path::new(&crate_dir);
    for watched in ["src", "cbindgen.toml", "Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            crate_dir.join(watched).display()
        );
    }

    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let soname = concat!("libtetherdb.so.", env!("CARGO_PKG_VERSION_MAJOR"));
        // Only the cdylib: what a program linked against it records as
        // DT_NEEDED, and what the dynamic loader then looks for.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
        if let Some(dir) = profile_dir() {
            link_soname(&dir, soname);
        }
    }

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    config.after_includes = Some(format!(
        "\n#define TETHER_VERSION_MAJOR {}\n#define TETHER_VERSION_MINOR {}\n#define TETHER_VERSION_PATCH {}",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
    ));

    let mut header = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen can parse the crate")
        .write(&mut header);
    // cbindgen prefixes variants with the whole enum name (TETHER_STATUS_OK);
    // the contract names them TETHER_OK, ...
    let header = String::from_utf8(header)
        .expect("cbindgen writes UTF-8")
        .replace("TETHER_STATUS_", "TETHER_");

    let path = crate_dir.join("include").join("tetherdb.h");
    // Only write when it changed, so that an unchanged header keeps its mtime.
    if std::fs::read_to_string(&path).ok().as_deref() != Some(header.as_str()) {
        std::fs::create_dir_all(path.parent().unwrap()).expect("include/ can be created");
        std::fs::write(&path, header).expect("include/tetherdb.h can be written");
    }
}

/// target/<profile> (or target/<triple>/<profile>), where cargo puts
/// libtetherdb.so: OUT_DIR is <that>/build/tetherdb-<hash>/out. None when
/// OUT_DIR is laid out otherwise.
fn profile_dir() -> Option<PathBuf> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR")?);
    let build = out_dir.ancestors().nth(2)?;
    if build.file_name()? != "build" {
        return None;
    }
    Some(build.parent()?.to_path_buf())
}

/// Makes dir/soname a symbolic link to libtetherdb.so (which cargo puts
/// there after this script has run), unless it already is one. Like the
/// header, it is made when the script runs: a link deleted by hand comes
/// back with the next change to src/ (or `touch build.rs`).
#[cfg(unix)]
fn link_soname(dir: &Path, soname: &str) {
    let link = dir.join(soname);
    if std::fs::read_link(&link).is_ok_and(|target| target == Path::new("libtetherdb.so")) {
        return;
    }
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink("libtetherdb.so", &link) {
        println!(
            "cargo:warning=cannot link {} to libtetherdb.so: {e}",
            link.display()
        );
    }
}

/// A build for Linux on a host without symbolic links: no link.
#[cfg(not(unix))]
fn link_soname(_dir: &Path, _soname: &str) {}
