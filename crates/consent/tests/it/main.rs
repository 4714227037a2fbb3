//! Integration tests for polity-consent: the store against real files, receipts as a
//! citizen would verify them.

mod receipts;
mod store;

use polity_consent::{ConsentRequest, DataCategory, PiiController, Purpose};
use polity_model::{Tenant, Timestamp};

/// A tenant by name.
pub fn tenant(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

/// An RFC 3339 instant.
pub fn at(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// A parking app asking an Adelaide citizen for parking-session and location data.
pub fn parking_request(subject: &str, days: u32) -> ConsentRequest {
    ConsentRequest {
        tenant: tenant("adelaide"),
        subject: subject.into(),
        recipient: "app:parking-app:adelaide".into(),
        purpose: Purpose::ServiceProvision,
        purpose_description: Some(
            "Show your parking sessions and remind you before they end".into(),
        ),
        data_categories: vec![DataCategory::ParkingSession, DataCategory::Location],
        duration_days: days,
        jurisdiction: "AU-SA".into(),
        collection_method: "citizen portal opt-in form".into(),
        policy_url: "https://adelaide.example/privacy/parking".into(),
        language: "en-AU".into(),
        pii_controller: PiiController {
            email: Some("privacy@adelaide.example".into()),
            ..PiiController::named("City of Adelaide")
        },
    }
}
