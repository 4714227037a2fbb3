//! Scenario tests of the `polity` binary: each starts the real binary as a child
//! process and talks to it over real protocols (HTTP, CoAP, MQTT) on loopback.
//!
//! | module | scenario |
//! |---|---|
//! | [`crash`] | `kill -9` under load loses no acknowledged observation |
//! | [`demo`] | `polity up` serves the demo nation within 30 s, units normalized |
//! | [`malformed`] | malformed input on every source is a clear, counted error |
//! | [`cli`] | busy ports name the flag, `validate` positions, `--help` |
//! | [`tls`] | `[node] tls`: HTTPS with rustls, tokens still required, untrusted clients refused |
//! | [`privacy`] | identifiers never in clear, consent and receipts, export, crypto-shredding |
//! | [`authz`] | route × role × tenant matrix over every route, forged tokens, citizens |
//! | [`issuers`] | external city issuers: JWKS file and URL, rotation, issuer down |
//!
//! Every child is killed (SIGKILL) when its guard drops, so a failing test leaves no
//! process behind. Listeners use port 0 or ports that were free a moment earlier, never
//! 1883.

mod authz;
mod cli;
mod common;
mod crash;
mod demo;
mod issuers;
mod malformed;
mod privacy;
mod tls;
