//! Integration tests of polity-tls: real sockets on 127.0.0.1:0, real handshakes, a real
//! embedded MQTT broker behind the TLS front.

mod https;
mod mqtt;
mod mtls;
mod support;
