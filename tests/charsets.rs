//! Every character of every character set the server has, read by Sluice as the server reads
//! it: each one-byte code, each two-byte code of the multi-byte sets (and EUC-JP's three-byte
//! JIS X 0212 codes) is converted to UTF-8 by the server and transcoded by Sluice's decoder,
//! with the collations Sluice's source loads; the two must agree wherever the server reads the
//! code. (The standard tables of the same names disagreed in 11 character sets.)

mod common;

use std::collections::BTreeMap;

use common::generate::hex;
use common::*;
use mysql_async::prelude::*;
use sluice::source::charset::Charset;

/// The byte sequences of `charset` worth asking about.
fn codes(charset: &str, maxlen: u8) -> Vec<Vec<u8>> {
    let mut codes: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    if maxlen >= 2 {
        for lead in 0x81..=0xfeu8 {
            for trail in 0x30..=0xfeu8 {
                codes.push(vec![lead, trail]);
            }
        }
    }
    if maxlen >= 3 && matches!(charset, "ujis" | "eucjpms") {
        for a in 0xa1..=0xfeu8 {
            for b in 0xa1..=0xfeu8 {
                codes.push(vec![0x8f, a, b]);
            }
        }
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_character_of_every_character_set_decodes_as_the_server_reads_it() {
    let mut conn = admin_pool().get_conn().await.unwrap();
    let charsets: Vec<(String, u8)> = conn
        .query("SELECT CHARACTER_SET_NAME, MAXLEN FROM information_schema.CHARACTER_SETS")
        .await
        .unwrap();
    let collations = sluice::source::mysql::collations(&mut conn).await.unwrap();
    let mut report = BTreeMap::new();
    let mut unsupported = Vec::new();
    for (charset, maxlen) in charsets {
        let codec = match collations.named(&charset) {
            Charset::Binary => continue,
            Charset::Other(_) => {
                unsupported.push(charset);
                continue;
            }
            Charset::Text(codec) => codec,
        };
        // UTF-8, UTF-16, UCS-2 and UTF-32 are algorithmic.
        if maxlen > 3
            || matches!(
                charset.as_str(),
                "ucs2" | "utf16" | "utf16le" | "utf8mb3" | "ascii"
            )
        {
            continue;
        }
        let codes = codes(&charset, maxlen);
        let mut differ: Vec<String> = Vec::new();
        for chunk in codes.chunks(2000) {
            let exprs: Vec<String> = chunk
                .iter()
                .map(|c| {
                    format!(
                        "HEX(CONVERT(CONVERT(X'{}' USING {charset}) USING utf8mb4))",
                        hex(c)
                    )
                })
                .collect();
            let row: mysql_async::Row = conn
                .query_first(format!("SELECT {}", exprs.join(", ")))
                .await
                .unwrap()
                .unwrap();
            for (code, theirs) in chunk.iter().zip(row.unwrap()) {
                let theirs: Option<String> = mysql_async::from_value(theirs);
                let Some(theirs) = theirs.and_then(|h| {
                    (0..h.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
                        .collect::<Option<Vec<u8>>>()
                }) else {
                    continue;
                };
                let theirs = String::from_utf8(theirs).unwrap();
                // The server marks a sequence it cannot read with '?': nothing to agree on.
                if theirs.contains('?') && code.as_slice() != b"?" {
                    continue;
                }
                let ours = codec.decode(code);
                if ours.as_deref() != Some(theirs.as_str()) {
                    differ.push(format!("{}: server {theirs:?}, Sluice {ours:?}", hex(code)));
                }
            }
        }
        report.insert(charset, differ);
    }
    let mut failures = String::new();
    for (charset, differ) in &report {
        println!("{charset}: {} codes differ", differ.len());
        if !differ.is_empty() {
            failures.push_str(&format!(
                "\n{charset}: {} codes differ, e.g. {:?}",
                differ.len(),
                &differ[..differ.len().min(5)]
            ));
        }
    }
    assert!(unsupported.is_empty(), "no codec for {unsupported:?}");
    assert!(failures.is_empty(), "{failures}");
}
