//! Configuration parsing: arbitrary bytes, as text, through
//! `Config::from_json`, and through `Config::from_file` from a file that
//! holds them. Either returns a configuration or an error; nothing panics.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use tetherdb::{Config, Error};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match Config::from_json(Some(text)) {
            Ok(config) => {
                // A valid configuration names its default backend.
                let default = config.default_backend_name().expect("validated");
                assert!(config.backend_names().contains(&default));
            }
            Err(Error::Config(message)) => assert!(!message.is_empty()),
            Err(other) => panic!("from_json failed with a non-config error: {other:?}"),
        }
    }
    // The file path takes any bytes, UTF-8 or not.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(data).unwrap();
    match Config::from_file(file.path()) {
        Ok(_) => assert!(std::str::from_utf8(data).is_ok()),
        Err(Error::Config(message)) => assert!(!message.is_empty()),
        Err(other) => panic!("from_file failed with a non-config error: {other:?}"),
    }
});
