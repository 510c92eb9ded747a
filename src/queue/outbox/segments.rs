//! A log's segment files: finding, scanning, creating, removing them.

use super::*;

/// One segment file of a log: the writes from `first_seq` on.
pub(super) struct Segment {
    pub(super) first_seq: u64,
    pub(super) path: PathBuf,
    pub(super) len: u64,
    pub(super) last_seq: Option<u64>,
}

/// What a log's files hold: its segments, the destination, the writes not
/// done (`start..end`) and their bytes.
pub(super) struct Scan {
    pub(super) segments: Vec<Segment>,
    pub(super) destination: Option<String>,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) bytes: u64,
}

/// Reads the log of backend `name` in `dir`, in two passes that keep no
/// more than a segment's list in memory: the done mark and the last write,
/// then the bytes of the writes not done. A frame cut short at the end of
/// the last segment (a crash while writing) is cut off; damage anywhere
/// else is an error.
pub(super) fn scan(dir: &Path, name: &str) -> Result<Scan> {
    let mut segments = Vec::new();
    for first_seq in segment_seqs(dir, name)? {
        let path = segment_path(dir, name, first_seq);
        let len = fs::metadata(&path)
            .map_err(|e| outbox_error(&path, e))?
            .len();
        segments.push(Segment {
            first_seq,
            path,
            len,
            last_seq: None,
        });
    }
    let mut destination = None;
    let mut done = 0;
    let mut end = 0;
    let count = segments.len();
    let mut headerless = None;
    for (index, segment) in segments.iter_mut().enumerate() {
        let is_tail = index + 1 == count;
        let mut reader = FrameReader::open(&segment.path, 0, segment.len)
            .map_err(|e| outbox_error(&segment.path, e))?;
        let mut whole = 0;
        loop {
            let body = match reader.next() {
                Ok(Some((_, body))) => body,
                Ok(None) => break,
                // The tail a crash cut short.
                Err(_) if is_tail => break,
                Err(e) => return Err(outbox_error(&segment.path, e)),
            };
            match (whole, body.first()) {
                (0, Some(&HEADER)) => {
                    let found = decode_header(&body).ok_or_else(|| {
                        outbox_error(
                            &segment.path,
                            "not a TetherDB outbox segment of this version",
                        )
                    })?;
                    destination.get_or_insert(found);
                }
                (0, _) => return Err(outbox_error(&segment.path, "not a TetherDB outbox segment")),
                (_, Some(_)) if is_write(&body) => {
                    let seq = decode_write(&body)
                        .ok_or_else(|| outbox_error(&segment.path, "a damaged write"))?
                        .seq;
                    segment.last_seq = Some(seq);
                    end = end.max(seq + 1);
                }
                (_, Some(&DONE)) => {
                    let mark = body
                        .get(1..9)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes)
                        .ok_or_else(|| outbox_error(&segment.path, "a damaged done mark"))?;
                    done = done.max(mark);
                }
                _ => return Err(outbox_error(&segment.path, "a frame of an unknown kind")),
            }
            whole = reader.position;
        }
        if whole == 0 {
            // A crash while the segment was being created: no header yet.
            headerless = Some(index);
        } else if whole < segment.len {
            let file = OpenOptions::new()
                .write(true)
                .open(&segment.path)
                .map_err(|e| outbox_error(&segment.path, e))?;
            file.set_len(whole)
                .and_then(|()| file.sync_data())
                .map_err(|e| outbox_error(&segment.path, e))?;
            segment.len = whole;
        }
    }
    if let Some(index) = headerless {
        remove_file(&segments.remove(index).path)?;
    }
    let end = end.max(done);
    let mut start = end;
    let mut bytes = 0;
    for segment in segments
        .iter()
        .filter(|s| s.last_seq.is_some_and(|last| last >= done))
    {
        let mut reader = FrameReader::open(&segment.path, 0, segment.len)
            .map_err(|e| outbox_error(&segment.path, e))?;
        while let Some((_, body)) = reader.next().map_err(|e| outbox_error(&segment.path, e))? {
            if let Some(record) = decode_write(&body).filter(|r| r.seq >= done) {
                start = start.min(record.seq);
                bytes += FRAME_PREFIX + body.len() as u64;
            }
        }
    }
    Ok(Scan {
        segments,
        destination,
        start,
        end,
        bytes,
    })
}

/// The first seqs of backend `name`'s segments in `dir`, in order.
pub(super) fn segment_seqs(dir: &Path, name: &str) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| outbox_error(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| outbox_error(dir, e))?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if let Some(seq) = file
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_suffix(".log"))
            .filter(|digits| digits.len() == 20)
            .and_then(|digits| digits.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// The backends with segments in `dir`.
pub(super) fn segment_owners(dir: &Path) -> Vec<String> {
    let mut owners: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            let stem = file.strip_suffix(".log")?;
            let (owner, digits) = stem.rsplit_once('.')?;
            (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| owner.to_owned())
        })
        .collect();
    owners.sort();
    owners.dedup();
    owners
}

pub(super) fn segment_path(dir: &Path, name: &str, first_seq: u64) -> PathBuf {
    dir.join(format!("{name}.{first_seq:020}.log"))
}

/// Creates a segment holding its header, durably: the file, then the
/// directory entry.
pub(super) fn new_segment(
    dir: &Path,
    name: &str,
    first_seq: u64,
    destination: &str,
) -> Result<(Segment, File)> {
    let path = segment_path(dir, name, first_seq);
    let mut file = private_file(&path).map_err(|e| outbox_error(&path, e))?;
    let mut body = vec![HEADER];
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(destination.as_bytes());
    let mut frame = Vec::new();
    push_frame(&mut frame, &body);
    file.write_all(&frame)
        .and_then(|()| file.sync_data())
        .map_err(|e| outbox_error(&path, e))?;
    sync_dir(dir).map_err(|e| outbox_error(dir, e))?;
    let segment = Segment {
        first_seq,
        path,
        len: frame.len() as u64,
        last_seq: None,
    };
    Ok((segment, file))
}

pub(super) fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(outbox_error(path, e)),
        _ => Ok(()),
    }
}
