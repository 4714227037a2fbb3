//! CoAP datagrams (RFC 7252) as the CoAP source receives them: `Packet::from_bytes`,
//! then what `sources::coap::process` does before it awaits the pipeline: Uri-Path and
//! Uri-Query options as text, the `t=` tenant, the Content-Format option, and the
//! decoder it selects; and the response packet it encodes (token echoed, diagnostic
//! payload). `process` itself is async and needs a socket and a pipeline, so its pure
//! steps are mirrored here (see `crates/ingest/src/sources/coap.rs`).

#![no_main]

#[path = "common/mod.rs"]
mod common;

use coap_lite::{
    CoapOption, MessageClass, MessageType, Packet, ResponseType,
    option_value::{OptionValueString, OptionValueU32},
};
use libfuzzer_sys::fuzz_target;
use polity_ingest::decode::{self, DecodeContext, Format};
use polity_model::Tenant;

/// `sources::coap::options_text`.
fn options_text(req: &Packet, opt: CoapOption) -> Vec<String> {
    req.get_options_as::<OptionValueString>(opt)
        .map(|l| l.into_iter().filter_map(Result::ok).map(|v| v.0).collect())
        .unwrap_or_default()
}

/// `sources::coap::content_format`.
fn content_format(req: &Packet) -> Option<u32> {
    let raw = req.get_first_option(CoapOption::ContentFormat)?;
    if raw.len() > 2 {
        return Some(u32::MAX);
    }
    Some(raw.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = Packet::from_bytes(data) else {
        return;
    };
    let path = options_text(&req, CoapOption::UriPath);
    let tenant = options_text(&req, CoapOption::UriQuery)
        .into_iter()
        .find_map(|q| q.strip_prefix("t=").map(str::to_owned))
        .and_then(|q| Tenant::new(&q).ok())
        .unwrap_or_else(|| Tenant::new("fuzz").expect("valid tenant"));
    let format = match content_format(&req) {
        Some(110) => Some(Format::SenmlJson),
        Some(112) => Some(Format::SenmlCbor),
        Some(50) => Some(Format::Json),
        _ => None,
    };
    let mut diagnostic = format!("no resource /{}", path.join("/"));
    if let Some(format) = format {
        let ctx = DecodeContext::new(tenant, common::NOW);
        match decode::decode(format, &req.payload, &ctx) {
            Ok(obs) => common::normalize(obs),
            Err(e) => diagnostic = e.to_string(),
        }
    }
    // The response, built as `sources::coap::response` builds it.
    let mut resp = Packet::new();
    resp.header.set_version(1);
    resp.header
        .set_type(if req.header.get_type() == MessageType::Confirmable {
            MessageType::Acknowledgement
        } else {
            MessageType::NonConfirmable
        });
    resp.header.message_id = req.header.message_id;
    resp.header.code = MessageClass::Response(ResponseType::BadRequest);
    resp.set_token(req.get_token().to_vec());
    resp.add_option_as(CoapOption::MaxAge, OptionValueU32(5));
    resp.add_option_as(CoapOption::Size1, OptionValueU32(65_536));
    let mut end = diagnostic.len().min(512);
    while !diagnostic.is_char_boundary(end) {
        end -= 1;
    }
    resp.payload = diagnostic.as_bytes()[..end].to_vec();
    let bytes = resp
        .to_bytes_with_limit(65_536)
        .expect("a response with a request's token fits a datagram");
    let back = Packet::from_bytes(&bytes).expect("our response parses");
    assert_eq!(back.get_token(), req.get_token(), "the token is echoed");
});
