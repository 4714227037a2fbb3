//! `application/senml+json` (CoAP content-format 110, HTTP `/api/ingest/senml`, MQTT):
//! `Pack::from_json`, `Pack::resolve`, re-encoding in both encodings, and the ingest
//! decoder that maps a pack to observations.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use polity_ingest::decode::decode_senml_json;
use polity_model::Pack;

fuzz_target!(|data: &[u8]| {
    for ctx in common::contexts() {
        if let Ok(obs) = decode_senml_json(data, &ctx) {
            common::normalize(obs);
        }
    }
    let Ok(pack) = Pack::from_json(data) else {
        return;
    };
    let resolved = pack.resolve(common::NOW);
    // What Polity writes, Polity reads back unchanged, in either encoding.
    let json = Pack::from_json(&pack.to_json()).expect("to_json output parses");
    assert_eq!(json, pack, "JSON round trip");
    let cbor = Pack::from_cbor(&pack.to_cbor()).expect("to_cbor output parses");
    assert_eq!(cbor, pack, "CBOR round trip");
    assert_eq!(
        cbor.resolve(common::NOW),
        resolved,
        "resolution after a round trip"
    );
});
