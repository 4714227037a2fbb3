//! Polity's consent records and receipts (issue #3, §4).
//!
//! A citizen consents to one recipient (an application or partner) processing some
//! categories of their personal data, in one city, for one purpose, for at most 12
//! months. This crate records that durably, answers "is this access permitted?" on the
//! hot path, records withdrawals that take effect before the next request, and gives the
//! citizen a signed receipt for every grant and withdrawal.
//!
//! It owns the consent store's files (see [`store`]) and the receipt signing key. It must
//! not touch other crates' data: it does not read observations or entity state, does not
//! decide access for lawful bases other than consent (that is the caller's policy), and
//! does not write the audit log (the caller logs each access with the [`ConsentId`]
//! that permitted it).
//!
//! # Modules
//!
//! - [`record`]: the vocabulary ([`Purpose`], [`DataCategory`]), validation of a
//!   [`ConsentRequest`] and the 12-month rule ([`record::expiry`]), and
//!   [`ConsentRecord`]. Pure.
//! - [`store`]: [`ConsentStore`], an fsynced append-only JSON-lines event file replayed
//!   into hash indexes; [`ConsentStore::permits`] is the check.
//! - [`receipt`]: Kantara Consent Receipt v1.1 JSON, signed as a compact JWS with
//!   Ed25519 (ring), and [`verify_receipt`] for citizens.
//!
//! # The 12-month rule
//!
//! Australia's Consumer Data Right limits a consent to 12 months (CDR Rules 4.11(1)(b),
//! 4.12(1)). Here: a request asks for `durationDays` in `1..=366`; the consent expires
//! exactly `durationDays × 24 h` after the grant, and that instant may not be later than
//! the same UTC wall-clock time 12 calendar months after the grant (29 February maps to
//! 28 February). So 366 days is accepted only across a 29 February. Expiry is
//! exclusive: at `expiresAt` the consent no longer permits access.
//!
//! # Field mapping
//!
//! Sources: Kantara Initiative, *Consent Receipt Specification* v1.1.0 (2018-02-20),
//! <https://kantarainitiative.org/file-downloads/consent-receipt-specification-v1-1-0/>;
//! ISO/IEC TS 27560:2023 *Privacy technologies — Consent record information
//! structure*, whose text is not public, mapped through the W3C DPVCG guide
//! *Consent Records and Receipts as per ISO/IEC TS 27560:2023 using DPV*,
//! <https://w3id.org/dpv/guides/consent-27560>, and DPV's consent states
//! (`dpv:ConsentGiven`, `dpv:ConsentWithdrawn`, `dpv:ConsentExpired`).
//!
//! | Polity (Rust / JSON) | Kantara CR v1.1 receipt | ISO/IEC TS 27560 / DPV |
//! |---|---|---|
//! | `consent_id` / `consentId` | (extension `consentId`) | record identifier |
//! | — (new per receipt, UUID v4) | `consentReceiptID` | receipt identifier |
//! | `subject` / `piiPrincipalId` | `piiPrincipalId` | PII principal identifier (`dpv:hasDataSubject`) |
//! | `pii_controller` / `piiController` | `piiControllers[]` (`piiController`, `contact`, `address`, `email`, `phone`, `piiControllerUrl`) | PII controller (`dpv:hasDataController`) |
//! | `recipient` | `services[].service`, `purposes[].thirdPartyName`, `thirdPartyDisclosure: true` | recipient (`dpv:hasRecipient`) |
//! | `purpose` | `purposes[].purposeCategory` (Polity term) | purpose (`dpv:hasPurpose`) |
//! | `purpose_description` / `purposeDescription` | `purposes[].purpose` | purpose description |
//! | `data_categories` / `piiCategories` | `purposes[].piiCategory` (Polity terms) | PII categories (`dpv:hasPersonalData`) |
//! | `granted_at` / `consentTimestamp` | `consentTimestamp` (seconds) | consent given event time (`dpv:ConsentGiven`) |
//! | `duration_days` / `durationDays`, `expires_at` / `expiresAt` | `purposes[].termination` (text), extension `expiresAt` | duration / expiry (`dpv:hasDuration`, `dpv:ConsentExpired`) |
//! | `withdrawn_at` / `withdrawnAt` | extension `withdrawnAt`, `consentState: withdrawn` | withdrawal event (`dpv:ConsentWithdrawn`) |
//! | `jurisdiction` | `jurisdiction` | jurisdiction (`dpv:hasJurisdiction`) |
//! | `collection_method` / `collectionMethod` | `collectionMethod` | collection method |
//! | `policy_url` / `policyUrl` | `policyUrl` | privacy notice (`dpv:hasNotice`) |
//! | `language` | `language` | notice language |
//! | — (always explicit opt-in) | `consentType: "EXPLICIT"`, `primaryPurpose: true` | consent type (`dpv:ExplicitlyExpressedConsent`) |
//! | — (no special categories) | `sensitive: false`, `spiCat: []` | special categories |
//! | `tenant` | (extension `tenant`) | — (the city; Polity's NGSI-LD tenant) |
//!
//! `purposeCategory` and `piiCategory` carry Polity's own terms (e.g. `service-provision`,
//! `parking-session`), not Kantara's numbered example lists, because the checks compare
//! these exact terms.
//!
//! # Not yet done
//!
//! - HTTP routes (the lead wires them) and the policy that decides which accesses need
//!   consent and which rest on another lawful basis.
//! - The receipt key has no rotation; old receipts verify only with the old key.
//! - The event file is never compacted: withdrawn and expired consents stay until the
//!   citizen's history is erased.

pub mod receipt;
pub mod record;
pub mod store;

pub use receipt::{Jwk, Receipt, ReceiptError, ReceiptJson, ReceiptState, verify_receipt};
pub use record::{
    ConsentId, ConsentRecord, ConsentRequest, ConsentState, DataCategory, PiiController, Purpose,
    RequestError,
};
pub use store::{ConsentError, ConsentStore};
