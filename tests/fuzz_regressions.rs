//! What the fuzz targets (fuzz/, scripts/fuzz.sh) found, each kept as a
//! plain test through the C entry points.

use std::ffi::CStr;
use std::ptr;

use tetherdb::ffi::*;
use tetherdb::Status;

fn last_error() -> String {
    unsafe { CStr::from_ptr(tether_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn open(dir: &std::path::Path) -> *mut TetherDb {
    let json = format!(
        "{{\"logging\": \"none\", \"local\": {{\"filepath\": {:?}}}}}\0",
        dir.join("db").to_str().unwrap()
    );
    let mut db = ptr::null_mut();
    let status = unsafe { tether_open(json.as_ptr().cast(), &mut db) };
    assert_eq!(status, Status::Ok, "{}", last_error());
    db
}

/// ffi target, crash-318f45b0 (and crash-75d9ebcf before it): a read of
/// an empty value returned TETHER_OK with `*out_value` set to Rust's
/// dangling pointer for an empty allocation, `(uint8_t *)1`, which the
/// target had taken as its own "not written" sentinel. Not a library bug:
/// the header promises a non-NULL pointer for an empty value, valid for 0
/// bytes and to be passed to `tether_free`; this pins that down, for reads
/// and for page values alike.
#[test]
fn an_empty_value_reads_back_as_non_null_with_length_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    unsafe {
        let key = c"g";
        let status = tether_write(
            db,
            ptr::null(),
            ptr::null(),
            key.as_ptr(),
            ptr::null(),
            0,
            0,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        let (mut value, mut len) = (ptr::null_mut(), 7);
        let status = tether_read(
            db,
            ptr::null(),
            ptr::null(),
            key.as_ptr(),
            &mut value,
            &mut len,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert!(!value.is_null());
        assert_eq!(len, 0);
        tether_free(value, len);

        let mut page = ptr::null_mut();
        let status = tether_list(
            db,
            ptr::null(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            10,
            &mut page,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert_eq!(tether_page_len(page), 1);
        let mut len = 7;
        assert!(!tether_page_value(page, 0, &mut len).is_null());
        assert_eq!(len, 0);
        tether_page_free(page);
        assert_eq!(tether_close(db), Status::Ok);
    }
}

/// open target (found reading what it reaches, before the fuzzer did; the
/// seed fuzz/corpus/open/big_capacity keeps it in reach): a
/// `queue_batch.capacity` too large to allocate (the
/// queue's channel allocates a slot per write when the worker starts)
/// aborted the whole process from inside `tether_open`, an allocation
/// failure being no panic the boundary can catch; one of 2^64 and more
/// panicked ("bounded channel capacity is too large") and came back as
/// TETHER_INTERNAL. The configuration now refuses capacities above
/// 10,000,000 with TETHER_CONFIG, before anything is opened.
#[test]
fn a_queue_capacity_too_large_to_allocate_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    for capacity in ["10000001", "1000000000000", "18446744073709551615"] {
        let json = format!(
            "{{\"local\": {{\"filepath\": {:?}}}, \"queue_batch\": {{\"capacity\": {capacity}}}}}\0",
            store.to_str().unwrap()
        );
        let sentinel = ptr::dangling_mut::<TetherDb>();
        let mut db = sentinel;
        let status = unsafe { tether_open(json.as_ptr().cast(), &mut db) };
        assert_eq!(
            status,
            Status::Config,
            "capacity {capacity}: {}",
            last_error()
        );
        assert!(
            last_error().contains("queue_batch.capacity"),
            "{}",
            last_error()
        );
        assert_eq!(db, sentinel);
    }
    assert!(!store.exists(), "nothing was opened");
    // The largest allowed still opens.
    let json = format!(
        "{{\"logging\": \"none\", \"local\": {{\"filepath\": {:?}}}, \
         \"queue_batch\": {{\"capacity\": 10000000, \"autostart\": false}}}}\0",
        store.to_str().unwrap()
    );
    let mut db = ptr::null_mut();
    let status = unsafe { tether_open(json.as_ptr().cast(), &mut db) };
    assert_eq!(status, Status::Ok, "{}", last_error());
    assert_eq!(unsafe { tether_close(db) }, Status::Ok);
}
