//! MySQL's compressed transactions (`binlog_transaction_compression=ON`, MySQL 8.0.20+): one
//! TRANSACTION_PAYLOAD event carries a whole transaction's events (BEGIN, table maps, rows,
//! XID) as whole events without checksums, usually zstd-compressed. The event body is a list
//! of `(type, length, value)` fields with length-encoded integers, an end mark (type 0), then
//! the payload.

use super::compressed::read_declared;
use super::cursor::{Cursor, DecodeError};

const END_MARK: u64 = 0;
const PAYLOAD_SIZE: u64 = 1;
const COMPRESSION_TYPE: u64 = 2;
const UNCOMPRESSED_SIZE: u64 = 3;

const ZSTD: u64 = 0;
const NONE: u64 = 255;

/// The inner events' bytes of a TRANSACTION_PAYLOAD body.
pub fn events(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut c = Cursor::new(body);
    let (mut size, mut compression, mut uncompressed) = (None, None, None);
    loop {
        let field = c.lenenc("payload field type")?;
        if field == END_MARK {
            break;
        }
        // Fields added by later servers are stepped over by their length.
        let value = c.lenenc_bytes("payload field")?;
        let number = || Cursor::new(value).lenenc("payload field value");
        match field {
            PAYLOAD_SIZE => size = Some(number()?),
            COMPRESSION_TYPE => compression = Some(number()?),
            UNCOMPRESSED_SIZE => uncompressed = Some(number()?),
            _ => {}
        }
    }
    let payload = c.rest();
    if let Some(size) = size
        && size != payload.len() as u64
    {
        return Err(DecodeError::Invalid(format!(
            "transaction payload declares {size} bytes and holds {}",
            payload.len()
        )));
    }
    match compression.unwrap_or(NONE) {
        NONE => Ok(payload.to_vec()),
        ZSTD => {
            let declared = uncompressed.ok_or_else(|| {
                DecodeError::Invalid(
                    "zstd transaction payload without its uncompressed size".into(),
                )
            })?;
            let decoder = zstd::stream::read::Decoder::new(payload)
                .map_err(|e| DecodeError::Invalid(format!("zstd: {e}")))?;
            read_declared(
                decoder,
                declared,
                payload.len(),
                "zstd",
                "transaction payload",
            )
        }
        other => Err(DecodeError::Invalid(format!(
            "transaction payload compressed with unknown algorithm {other}"
        ))),
    }
}

/// Builds a TRANSACTION_PAYLOAD body around `events`, as MySQL writes it.
#[cfg(test)]
pub fn body(events: &[u8], zstd_level: Option<i32>) -> Vec<u8> {
    let (payload, compression) = match zstd_level {
        Some(level) => (zstd::encode_all(events, level).unwrap(), ZSTD),
        None => (events.to_vec(), NONE),
    };
    let mut out = Vec::new();
    let field = |out: &mut Vec<u8>, ty: u64, value: u64| {
        let v = lenenc(value);
        out.extend(lenenc(ty));
        out.extend(lenenc(v.len() as u64));
        out.extend(v);
    };
    field(&mut out, PAYLOAD_SIZE, payload.len() as u64);
    field(&mut out, COMPRESSION_TYPE, compression);
    field(&mut out, UNCOMPRESSED_SIZE, events.len() as u64);
    out.push(END_MARK as u8);
    out.extend(payload);
    out
}

#[cfg(test)]
fn lenenc(v: u64) -> Vec<u8> {
    match v {
        0..=0xfa => vec![v as u8],
        0xfb..=0xffff => [vec![0xfc], (v as u16).to_le_bytes().to_vec()].concat(),
        _ => [vec![0xfe], v.to_le_bytes().to_vec()].concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decompress_and_lies_are_errors() {
        let events = b"whatever the events are".repeat(100);
        assert_eq!(super::events(&body(&events, Some(3))).unwrap(), events);
        assert_eq!(super::events(&body(&events, None)).unwrap(), events);
        let mut short = body(&events, Some(3));
        short.pop();
        assert!(super::events(&short).is_err());
        let mut wrong = body(&events, Some(3));
        let n = wrong.len();
        wrong[n - 3] ^= 0xff;
        assert!(super::events(&wrong).is_err());
        assert!(super::events(&[]).is_err());
    }
}
