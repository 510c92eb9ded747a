//! Generates include/tetherdb.h from the `extern "C"` functions in src/ffi.
//! The header is committed; CI checks that the build leaves it unchanged.

use std::env;
use std::path::Path;

fn main() {
    let crate_dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let crate_dir = Path::new(&crate_dir);
    for watched in ["src", "cbindgen.toml", "Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            crate_dir.join(watched).display()
        );
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
