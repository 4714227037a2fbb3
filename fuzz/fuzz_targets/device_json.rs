//! Polity device JSON (CoAP content-format 50, MQTT): `decode_json` with a bare and a
//! configured source, and the MQTT `auto` path (`Format::detect` then `decode`).

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use polity_ingest::decode::{Format, decode, decode_json};

fuzz_target!(|data: &[u8]| {
    let format = Format::detect(data);
    for ctx in common::contexts() {
        if let Ok(obs) = decode_json(data, &ctx) {
            assert!(!obs.is_empty(), "an accepted message carries values");
            common::normalize(obs);
        }
        if format != Format::Json
            && let Ok(obs) = decode(format, data, &ctx)
        {
            common::normalize(obs);
        }
    }
});
