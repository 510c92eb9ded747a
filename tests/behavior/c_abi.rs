//! Every C entry point, driven the way a C caller drives it.

use std::ffi::{CStr, CString};
use std::ptr;

use tetherdb::ffi::*;
use tetherdb::Status;

use crate::common::{c, last_error};
use crate::engine::{cases, Space};

cases![every_c_entry_point_works];

/// Opens a handle whose worker is not started, starts it, writes three
/// keys (one queued) under bucket `b`, then reads, updates, deletes and
/// lists them through the C ABI, and closes. Listing order is not assumed.
fn every_c_entry_point_works(s: &Space) {
    let backend = s.name();
    let config = c(&s.config(r#"{"autostart": false}"#));
    let (backend_name, bucket) = (c(backend), c("b"));
    let mut db = ptr::null_mut();
    unsafe {
        assert_eq!(
            tether_open(config.as_ptr(), &mut db),
            Status::Ok,
            "{}",
            last_error()
        );
        assert_eq!(tether_start(db), Status::Ok);
        for (i, flags) in [0, TETHER_QUEUE, 0].into_iter().enumerate() {
            let key = c(&format!("k{i}"));
            let value = format!("v{i}");
            let status = tether_write(
                db,
                backend_name.as_ptr(),
                bucket.as_ptr(),
                key.as_ptr(),
                value.as_ptr(),
                value.len(),
                flags,
            );
            assert_eq!(status, Status::Ok, "{}", last_error());
        }
        assert_eq!(tether_flush(db), Status::Ok, "{}", last_error());

        let key = c("k1");
        let (mut value, mut len) = (ptr::null_mut(), 0);
        let status = tether_read(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            &mut value,
            &mut len,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert_eq!(std::slice::from_raw_parts(value, len), b"v1");
        tether_free(value, len);

        let absent = c("absent");
        let status = tether_update(
            db,
            ptr::null(),
            bucket.as_ptr(),
            absent.as_ptr(),
            b"x".as_ptr(),
            1,
        );
        assert_eq!(status, Status::NotFound);
        assert_eq!(
            last_error(),
            format!("tether_update: {backend}: key \"b:absent\" not found")
        );
        let status = tether_update(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            b"new".as_ptr(),
            3,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        let status = tether_read(
            db,
            ptr::null(),
            bucket.as_ptr(),
            key.as_ptr(),
            &mut value,
            &mut len,
        );
        assert_eq!(status, Status::Ok, "{}", last_error());
        assert_eq!(std::slice::from_raw_parts(value, len), b"new");
        tether_free(value, len);
        assert_eq!(
            tether_delete(db, ptr::null(), bucket.as_ptr(), key.as_ptr()),
            Status::Ok
        );
        assert_eq!(
            tether_delete(db, ptr::null(), bucket.as_ptr(), key.as_ptr()),
            Status::NotFound
        );

        // Two keys remain: a page of one, then the last page.
        let mut listed = Vec::new();
        let mut after: Option<CString> = None;
        let mut pages = 0;
        loop {
            let mut page = ptr::null_mut();
            let start = after.as_ref().map_or(ptr::null(), |a| a.as_ptr());
            let status = tether_list(
                db,
                ptr::null(),
                bucket.as_ptr(),
                ptr::null(),
                start,
                1,
                &mut page,
            );
            assert_eq!(status, Status::Ok, "{}", last_error());
            pages += 1;
            for i in 0..tether_page_len(page) {
                let key = CStr::from_ptr(tether_page_key(page, i));
                listed.push(key.to_str().unwrap().to_owned());
            }
            let next = tether_page_next(page);
            after = (!next.is_null()).then(|| CStr::from_ptr(next).to_owned());
            tether_page_free(page);
            if after.is_none() {
                break;
            }
        }
        listed.sort();
        assert_eq!(listed, ["k0", "k2"]);
        assert_eq!(pages, 2);

        assert_eq!(tether_stop(db), Status::Ok);
        assert_eq!(tether_close(db), Status::Ok);
    }
}
