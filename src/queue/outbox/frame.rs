//! The log's frames: length, CRC-32, then a body, of three kinds.

use super::*;

pub(super) const MAGIC: &[u8; 16] = b"tetherdb-outbox1";

pub(super) const HEADER: u8 = 0;
pub(super) const WRITE: u8 = 1;
pub(super) const DONE: u8 = 2;
/// A write whose key expires: as `WRITE`, with the deadline (ms since the
/// epoch) and the sliding ttl (0: fixed) after the time.
pub(super) const EXPIRING_WRITE: u8 = 3;
/// Length and CRC-32 before each frame's body.
pub(super) const FRAME_PREFIX: u64 = 8;
/// A write frame's body before its key and value: kind, sequence number,
/// time, key length; then, for an expiring write, its deadline.
const WRITE_PREFIX: u64 = 1 + 8 + 8 + 4;
const DEADLINE_BYTES: u64 = 8 + 8;

/// The bytes a write takes in the outbox, as `outbox_max_bytes` counts them.
pub(crate) fn write_size(write: &Write) -> u64 {
    let deadline = if write.deadline.is_some() {
        DEADLINE_BYTES
    } else {
        0
    };
    FRAME_PREFIX + WRITE_PREFIX + deadline + (write.key.len() + write.value.len()) as u64
}

/// A write read back from the outbox.
pub(crate) struct Record {
    pub seq: u64,
    /// When it was queued.
    pub queued_at: SystemTime,
    pub write: Write,
}

/// Appends the frame of write `seq`, queued at `queued_at` (ms since the
/// epoch), encoded in place.
pub(super) fn push_write(
    out: &mut Vec<u8>,
    seq: u64,
    queued_at: u64,
    key: &[u8],
    value: &[u8],
    deadline: Option<Deadline>,
) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX as usize]);
    out.push(match deadline {
        None => WRITE,
        Some(_) => EXPIRING_WRITE,
    });
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&queued_at.to_le_bytes());
    if let Some(deadline) = deadline {
        out.extend_from_slice(&deadline.at_ms.to_le_bytes());
        out.extend_from_slice(&deadline.sliding_ms.to_le_bytes());
    }
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    seal_frame(&mut out[start..]);
}

pub(super) fn push_frame(out: &mut Vec<u8>, body: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX as usize]);
    out.extend_from_slice(body);
    seal_frame(&mut out[start..]);
}

/// Fills in the length and CRC-32 of a frame whose body follows room left
/// for them.
fn seal_frame(frame: &mut [u8]) {
    let (prefix, body) = frame.split_at_mut(FRAME_PREFIX as usize);
    prefix[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    prefix[4..].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
}

pub(super) fn decode_header(body: &[u8]) -> Option<String> {
    let rest = body.get(1..)?.strip_prefix(MAGIC.as_slice())?;
    String::from_utf8(rest.to_vec()).ok()
}

/// Whether a frame's body (kind first) is a write.
pub(super) fn is_write(body: &[u8]) -> bool {
    matches!(body.first(), Some(&WRITE | &EXPIRING_WRITE))
}

pub(super) fn decode_write(body: &[u8]) -> Option<Record> {
    let u64_at = |at: usize| {
        body.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let (deadline, at) = match body.first() {
        Some(&WRITE) => (None, 17),
        Some(&EXPIRING_WRITE) => {
            let deadline = Deadline {
                at_ms: u64_at(17)?,
                sliding_ms: u64_at(25)?,
            };
            (Some(deadline), 33)
        }
        _ => return None,
    };
    let seq = u64_at(1)?;
    let millis = u64_at(9)?;
    let key_len = u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize;
    let key = body.get(at + 4..at + 4 + key_len)?;
    let value = body.get(at + 4 + key_len..)?;
    Some(Record {
        seq,
        queued_at: UNIX_EPOCH + Duration::from_millis(millis),
        write: Write {
            key: String::from_utf8(key.to_vec()).ok()?,
            value: value.to_vec(),
            deadline,
        },
    })
}

/// Reads frames from `offset` to `end` of a segment.
pub(super) struct FrameReader {
    reader: BufReader<File>,
    pub(super) position: u64,
    end: u64,
}

impl FrameReader {
    pub(super) fn open(path: &Path, offset: u64, end: u64) -> std::io::Result<FrameReader> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(FrameReader {
            reader: BufReader::with_capacity(1 << 16, file),
            position: offset,
            end,
        })
    }

    /// The next frame's offset and body; `None` at the end; an error for a
    /// frame cut short or damaged.
    pub(super) fn next(&mut self) -> std::io::Result<Option<(u64, Vec<u8>)>> {
        if self.position >= self.end {
            return Ok(None);
        }
        let damaged =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        if self.end - self.position < FRAME_PREFIX {
            return Err(damaged("a frame cut short"));
        }
        let mut prefix = [0u8; 8];
        self.reader.read_exact(&mut prefix)?;
        let len = u32::from_le_bytes(prefix[..4].try_into().unwrap()) as u64;
        let crc = u32::from_le_bytes(prefix[4..].try_into().unwrap());
        if self.end - self.position - FRAME_PREFIX < len {
            return Err(damaged("a frame cut short"));
        }
        let mut body = vec![0; len as usize];
        self.reader.read_exact(&mut body)?;
        if crc32fast::hash(&body) != crc {
            return Err(damaged("a frame whose checksum does not match"));
        }
        let offset = self.position;
        self.position += FRAME_PREFIX + len;
        Ok(Some((offset, body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write's deadline goes into the outbox with it, so that a write
    /// kept there past its deadline is still known to have expired.
    #[test]
    fn writes_with_and_without_a_deadline_decode_as_pushed() {
        for deadline in [
            None,
            Some(Deadline {
                at_ms: 1_700_000_000_123,
                sliding_ms: 0,
            }),
            Some(Deadline {
                at_ms: u64::MAX,
                sliding_ms: 300,
            }),
        ] {
            let write = Write {
                key: "b:k".into(),
                value: b"value".to_vec(),
                deadline,
            };
            let mut frames = Vec::new();
            push_write(
                &mut frames,
                7,
                42,
                write.key.as_bytes(),
                &write.value,
                deadline,
            );
            assert_eq!(frames.len() as u64, write_size(&write));
            let body = &frames[FRAME_PREFIX as usize..];
            assert!(is_write(body));
            let record = decode_write(body).unwrap();
            assert_eq!((record.seq, record.write), (7, write));
        }
    }
}
