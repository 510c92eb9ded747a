//! The upgrade from the outbox an earlier TetherDB kept in sled.

use super::*;

/// Moves the writes of an outbox that an earlier TetherDB kept in a sled
/// store (one tree `queued:<backend>` per backend; keys the big-endian
/// sequence numbers; records of the time queued in ms and the key's length,
/// big-endian, then the key and the value) into the logs of this handle's
/// backends, then deletes the sled files. Those writes had no recorded
/// destination: they go to the backend of that name, as they would have.
/// Until the sled files are gone they are the truth: a migration cut short
/// starts again.
pub(super) fn migrate_sled_outbox(dir: &Path, backends: &[Arc<dyn Backend>]) -> Result<()> {
    if !(dir.join("db").is_file() && dir.join("conf").is_file()) {
        return Ok(());
    }
    let old_error = |e: sled::Error| outbox_error(dir, format!("the earlier (sled) outbox: {e}"));
    {
        // Declared first, dropped last: the store's lock is free after it.
        let _released = crate::backend::local::AwaitUnlock::new(dir);
        let old = sled::Config::new().path(dir).open().map_err(old_error)?;
        for tree_name in old.tree_names() {
            let Some(name) = tree_name.strip_prefix(b"queued:") else {
                continue;
            };
            let tree = old.open_tree(&tree_name).map_err(old_error)?;
            if tree.is_empty() {
                continue;
            }
            let name = String::from_utf8_lossy(name).into_owned();
            let Some(backend) = backends.iter().find(|b| b.name() == name) else {
                return Err(Error::Config(format!(
                    "the outbox {} holds {} queued write(s) for backend {name}, kept by an \
                     earlier TetherDB, and this configuration has no {name}: open it with one \
                     that has",
                    dir.display(),
                    tree.len()
                )));
            };
            for first_seq in segment_seqs(dir, &name)? {
                remove_file(&segment_path(dir, &name, first_seq))?;
            }
            let (_, mut file) = new_segment(dir, &name, 0, &backend.destination())?;
            let mut frames = Vec::new();
            for entry in tree.iter() {
                let (key, record) = entry.map_err(old_error)?;
                let seq = u64::from_be_bytes(key.as_ref().try_into().unwrap_or_default());
                let damaged =
                    || outbox_error(dir, format!("the earlier outbox's record {seq} is damaged"));
                let millis =
                    u64::from_be_bytes(record.get(..8).ok_or_else(damaged)?.try_into().unwrap());
                let key_len =
                    u32::from_be_bytes(record.get(8..12).ok_or_else(damaged)?.try_into().unwrap())
                        as usize;
                let stored_key = record.get(12..12 + key_len).ok_or_else(damaged)?;
                let value = &record[12 + key_len..];
                push_write(&mut frames, seq, millis, stored_key, value, None);
            }
            file.write_all(&frames)
                .and_then(|()| file.sync_data())
                .map_err(|e| outbox_error(dir, e))?;
        }
        sync_dir(dir).map_err(|e| outbox_error(dir, e))?;
    }
    // `db` first: without it, the outbox is no sled store any more.
    for file in ["db", "conf"] {
        remove_file(&dir.join(file))?;
    }
    for entry in fs::read_dir(dir)
        .map_err(|e| outbox_error(dir, e))?
        .flatten()
    {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") {
            remove_file(&entry.path())?;
        } else if name == "blobs" {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}
