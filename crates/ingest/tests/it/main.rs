//! Integration tests of polity-ingest: real sockets, a real broker and a real store.
//!
//! | module | covers |
//! |---|---|
//! | [`coap`] | the CoAP source end to end against a FjallStore |
//! | [`mqtt`] | the MQTT source through the embedded broker (and Mosquitto, opt-in) |
//! | [`decode`] | property tests of the decoders |

mod coap;
mod decode;
mod mqtt;
mod node;
