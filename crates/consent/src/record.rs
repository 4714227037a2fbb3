//! Consent requests and records: the vocabulary (purposes, data categories), the
//! validation rules (above all the 12-month limit), and the record a grant produces.
//!
//! Pure: no I/O, no clock. Time always comes in as an argument so that tests and the
//! store decide what "now" is. This module must not touch files or keys; the store and
//! the receipt modules own those.

use std::{fmt, str::FromStr};

use polity_model::{Tenant, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds in one day.
const DAY_MS: i64 = 86_400_000;

/// The longest duration a request may ask for, in days. The binding limit is
/// [`latest_expiry`]: 12 calendar months, which is 365 or 366 days depending on
/// whether a 29 February falls inside the period.
pub const MAX_DURATION_DAYS: u32 = 366;

/// A request did not pass validation. Each message says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The subject pseudonym is missing or malformed.
    #[error(
        "subject `{0}` is invalid: send the citizen's pseudonym, 1 to 256 characters without whitespace or control characters"
    )]
    BadSubject(String),
    /// The recipient principal is missing or malformed.
    #[error(
        "recipient `{0}` is invalid: send a principal such as app:parking-app:adelaide, 1 to 256 characters without whitespace"
    )]
    BadRecipient(String),
    /// No data category was named.
    #[error(
        "data categories are empty: name at least one of {}",
        DataCategory::vocabulary()
    )]
    NoCategories,
    /// A data category is not in the vocabulary.
    #[error("data category `{0}` is unknown: use one of {vocab}", vocab = DataCategory::vocabulary())]
    UnknownCategory(String),
    /// A purpose is not in the vocabulary.
    #[error("purpose `{0}` is unknown: use one of {vocab}", vocab = Purpose::vocabulary())]
    UnknownPurpose(String),
    /// The duration is outside 1..=366 days.
    #[error("duration of {0} days is out of range: ask for 1 to 366 days (at most 12 months)")]
    DurationOutOfRange(u32),
    /// The duration is within 366 days but reaches beyond 12 calendar months.
    #[error(
        "a consent granted at {granted_at} for {days} days would end at {expires_at}, later than 12 calendar months ({latest}); ask for at most {max_days} days"
    )]
    ExceedsTwelveMonths {
        /// The requested duration.
        days: u32,
        /// When the consent would be granted.
        granted_at: Timestamp,
        /// When it would expire.
        expires_at: Timestamp,
        /// The latest expiry allowed: 12 calendar months after the grant.
        latest: Timestamp,
        /// The largest whole number of days that fits.
        max_days: u32,
    },
    /// The jurisdiction is not an ISO 3166 code.
    #[error(
        "jurisdiction `{0}` is invalid: use an ISO 3166-1 alpha-2 or ISO 3166-2 code such as AU or AU-SA"
    )]
    BadJurisdiction(String),
    /// The collection method is empty or too long.
    #[error(
        "collection method is invalid: describe how consent was obtained (e.g. `citizen portal opt-in form`) in 1 to 256 characters"
    )]
    BadCollectionMethod,
    /// The policy URL is not an http(s) URL.
    #[error("policy URL `{0}` is invalid: link the privacy notice with an https:// URL")]
    BadPolicyUrl(String),
    /// The language tag is malformed.
    #[error("language `{0}` is invalid: use a BCP 47 tag such as en or en-AU")]
    BadLanguage(String),
    /// The purpose description is too long or holds control characters.
    #[error("purpose description is invalid: at most 1024 characters without control characters")]
    BadPurposeDescription,
    /// The controller is unnamed or a field is malformed.
    #[error(
        "PII controller is invalid ({0}): name the accountable body, e.g. `City of Adelaide`, in 1 to 256 characters"
    )]
    BadController(&'static str),
}

/// Why the data is processed. A small closed vocabulary so that the hot-path check
/// compares enums, not text; the free-text [`ConsentRequest::purpose_description`] says
/// the rest to the citizen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// Providing the service the citizen asked for (e.g. a parking app showing their session).
    ServiceProvision,
    /// Charging for a service (e.g. a parking fee or a utility bill).
    Billing,
    /// Tailoring a service to the citizen (e.g. energy-saving advice).
    Personalisation,
    /// Research, including by a university partner.
    Research,
    /// City planning and statistics about the citizen's own use.
    UrbanPlanning,
}

impl Purpose {
    /// Every purpose, in vocabulary order.
    pub const ALL: [Purpose; 5] = [
        Purpose::ServiceProvision,
        Purpose::Billing,
        Purpose::Personalisation,
        Purpose::Research,
        Purpose::UrbanPlanning,
    ];

    /// The term as it appears in JSON and receipts.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::ServiceProvision => "service-provision",
            Purpose::Billing => "billing",
            Purpose::Personalisation => "personalisation",
            Purpose::Research => "research",
            Purpose::UrbanPlanning => "urban-planning",
        }
    }

    /// A plain-language description, used when the request gives none.
    pub fn describe(self) -> &'static str {
        match self {
            Purpose::ServiceProvision => "To provide the service you asked for",
            Purpose::Billing => "To charge you for the service you used",
            Purpose::Personalisation => "To tailor the service to you",
            Purpose::Research => "For research",
            Purpose::UrbanPlanning => "For city planning",
        }
    }

    fn vocabulary() -> String {
        join(Purpose::ALL.iter().map(|p| p.as_str()))
    }
}

/// A category of personal data, following the privacy classes the city mappings give
/// attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataCategory {
    /// Household or meter energy use (smart meters).
    EnergyConsumption,
    /// Household or meter water use.
    WaterConsumption,
    /// A person's location.
    Location,
    /// A parking session linked to a person (start, end, bay).
    ParkingSession,
    /// Identifiers linking a device or account to a person (plate, account, MAC).
    Identifier,
    /// Trips and travel patterns (public transport, bikes, traffic).
    Mobility,
}

impl DataCategory {
    /// Every category, in vocabulary order.
    pub const ALL: [DataCategory; 6] = [
        DataCategory::EnergyConsumption,
        DataCategory::WaterConsumption,
        DataCategory::Location,
        DataCategory::ParkingSession,
        DataCategory::Identifier,
        DataCategory::Mobility,
    ];

    /// The term as it appears in JSON and receipts.
    pub fn as_str(self) -> &'static str {
        match self {
            DataCategory::EnergyConsumption => "energy-consumption",
            DataCategory::WaterConsumption => "water-consumption",
            DataCategory::Location => "location",
            DataCategory::ParkingSession => "parking-session",
            DataCategory::Identifier => "identifier",
            DataCategory::Mobility => "mobility",
        }
    }

    /// This category's bit in a [`CategorySet`].
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn vocabulary() -> String {
        join(DataCategory::ALL.iter().map(|c| c.as_str()))
    }
}

/// A set of data categories as a bit mask, for the hot-path check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CategorySet(u8);

impl CategorySet {
    pub(crate) fn of(categories: &[DataCategory]) -> Self {
        CategorySet(categories.iter().fold(0, |m, c| m | c.bit()))
    }

    pub(crate) fn contains(self, c: DataCategory) -> bool {
        self.0 & c.bit() != 0
    }
}

fn join<'a>(terms: impl Iterator<Item = &'a str>) -> String {
    terms.collect::<Vec<_>>().join(", ")
}

macro_rules! vocabulary_serde {
    ($ty:ident, $err:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = RequestError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| RequestError::$err(s.chars().take(64).collect()))
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

vocabulary_serde!(Purpose, UnknownPurpose);
vocabulary_serde!(DataCategory, UnknownCategory);

/// A consent's identifier: 128 random bits, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsentId([u8; 16]);

/// Text that is not a consent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("consent id `{0}` is invalid: it is 32 lowercase hex digits, as returned by the grant")]
pub struct ConsentIdError(String);

impl ConsentId {
    /// Wraps 16 bytes (the store draws them from the system random source).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        ConsentId(bytes)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ConsentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ConsentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsentId({self})")
    }
}

impl FromStr for ConsentId {
    type Err = ConsentIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConsentIdError(s.chars().take(64).collect());
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(ConsentId(out))
    }
}

impl Serialize for ConsentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConsentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The body accountable for the processing: Kantara's `piiControllers[]` entry, ISO/IEC
/// TS 27560's PII controller. Usually the city, filled in from tenant configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PiiController {
    /// The controller's name (`piiController`), e.g. `City of Adelaide`.
    #[serde(rename = "piiController")]
    pub name: String,
    /// The contact person or office (`contact`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// A postal address, one line (`address.streetAddress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// ISO 3166-1 country of the address (`address.addressCountry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The privacy contact's e-mail (`email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The privacy contact's phone number (`phone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The controller's web site (`piiControllerUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl PiiController {
    /// A controller known only by name.
    pub fn named(name: &str) -> Self {
        PiiController {
            name: name.to_owned(),
            contact: None,
            address: None,
            country: None,
            email: None,
            phone: None,
            url: None,
        }
    }

    fn validate(&self) -> Result<(), RequestError> {
        if !is_text(&self.name, 256) {
            return Err(RequestError::BadController("name"));
        }
        let optional = [
            ("contact", &self.contact),
            ("address", &self.address),
            ("country", &self.country),
            ("email", &self.email),
            ("phone", &self.phone),
            ("url", &self.url),
        ];
        for (field, value) in optional {
            if value.as_deref().is_some_and(|v| !is_text(v, 512)) {
                return Err(RequestError::BadController(field));
            }
        }
        Ok(())
    }
}

/// What a citizen agrees to: the input of [`crate::ConsentStore::grant`]. JSON names
/// follow the Kantara Consent Receipt where one exists (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsentRequest {
    /// The city (NGSI-LD tenant) whose data the consent covers.
    pub tenant: Tenant,
    /// The citizen's pseudonym (Kantara `piiPrincipalId`). Never a name or e-mail.
    #[serde(rename = "piiPrincipalId")]
    pub subject: String,
    /// Who may access the data: a principal such as `app:parking-app:adelaide`
    /// (Kantara `thirdPartyName`, 27560 recipient).
    pub recipient: String,
    /// Why (Kantara `purposeCategory`).
    pub purpose: Purpose,
    /// The purpose in the citizen's words (Kantara `purpose`); defaults to
    /// [`Purpose::describe`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_description: Option<String>,
    /// Which kinds of personal data (Kantara `piiCategory`). Duplicates are removed.
    #[serde(rename = "piiCategories")]
    pub data_categories: Vec<DataCategory>,
    /// How long, in days: 1 to 366, and never beyond 12 calendar months (see
    /// [`latest_expiry`]).
    pub duration_days: u32,
    /// Where the law applies: ISO 3166-1 alpha-2 or ISO 3166-2, e.g. `AU-SA`.
    pub jurisdiction: String,
    /// How consent was obtained, e.g. `citizen portal opt-in form`.
    pub collection_method: String,
    /// The privacy notice the citizen was shown.
    pub policy_url: String,
    /// The language of the notice, BCP 47.
    pub language: String,
    /// The accountable body.
    pub pii_controller: PiiController,
}

impl ConsentRequest {
    /// Checks every field and returns the expiry a grant at `granted_at` would get.
    pub fn validate(&self, granted_at: Timestamp) -> Result<Timestamp, RequestError> {
        if !is_token(&self.subject, 256) {
            return Err(RequestError::BadSubject(clip(&self.subject)));
        }
        if !is_token(&self.recipient, 256) {
            return Err(RequestError::BadRecipient(clip(&self.recipient)));
        }
        if self.data_categories.is_empty() {
            return Err(RequestError::NoCategories);
        }
        if self
            .purpose_description
            .as_deref()
            .is_some_and(|d| !is_text(d, 1024))
        {
            return Err(RequestError::BadPurposeDescription);
        }
        if !is_jurisdiction(&self.jurisdiction) {
            return Err(RequestError::BadJurisdiction(clip(&self.jurisdiction)));
        }
        if !is_text(&self.collection_method, 256) {
            return Err(RequestError::BadCollectionMethod);
        }
        if !is_policy_url(&self.policy_url) {
            return Err(RequestError::BadPolicyUrl(clip(&self.policy_url)));
        }
        if !is_language(&self.language) {
            return Err(RequestError::BadLanguage(clip(&self.language)));
        }
        self.pii_controller.validate()?;
        expiry(granted_at, self.duration_days)
    }
}

/// The expiry of a consent granted at `granted_at` for `days` days, if allowed.
///
/// The rule, precisely: `days` is in `1..=366`, and `granted_at + days × 24 h` is not
/// later than [`latest_expiry`]`(granted_at)`, the same wall-clock instant (UTC) 12
/// calendar months later. So 366 days is allowed only when a 29 February lies inside
/// the period.
pub fn expiry(granted_at: Timestamp, days: u32) -> Result<Timestamp, RequestError> {
    if !(1..=MAX_DURATION_DAYS).contains(&days) {
        return Err(RequestError::DurationOutOfRange(days));
    }
    let expires_at = Timestamp::from_millis(granted_at.as_millis() + i64::from(days) * DAY_MS);
    let latest = latest_expiry(granted_at);
    if expires_at > latest {
        let max_days = (latest.as_millis() - granted_at.as_millis()).div_euclid(DAY_MS);
        return Err(RequestError::ExceedsTwelveMonths {
            days,
            granted_at,
            expires_at,
            latest,
            max_days: u32::try_from(max_days).unwrap_or(0),
        });
    }
    Ok(expires_at)
}

/// 12 calendar months after `t`: the same UTC time of day on the same day of the month
/// one year later, or on 28 February when `t` falls on 29 February and the next year is
/// not a leap year. This is the Consumer Data Right's maximum sharing duration (CDR Rules
/// 4.11(1)(b) and 4.12(1)), applied in UTC.
pub fn latest_expiry(t: Timestamp) -> Timestamp {
    let ms = t.as_millis();
    let days = ms.div_euclid(DAY_MS);
    let time_of_day = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let next = y + 1;
    let d = if m == 2 && d == 29 && !is_leap(next) {
        28
    } else {
        d
    };
    Timestamp::from_millis(days_from_civil(next, m, d) * DAY_MS + time_of_day)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the standard era-based
/// computation: 400-year eras of 146,097 days, years starting in March).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn clip(s: &str) -> String {
    s.chars().take(128).collect()
}

/// Printable text of 1..=max characters with no control characters and no
/// surrounding whitespace.
fn is_text(s: &str, max: usize) -> bool {
    !s.is_empty() && s.chars().count() <= max && s.trim() == s && !s.chars().any(char::is_control)
}

/// Like [`is_text`], without any whitespace.
fn is_token(s: &str, max: usize) -> bool {
    is_text(s, max) && !s.chars().any(char::is_whitespace)
}

fn is_jurisdiction(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=9).contains(&b.len())
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && (b.len() == 2
            || (b[2] == b'-'
                && b.len() > 3
                && b[3..]
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())))
}

fn is_policy_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.len() > "https://".len()
        && polity_model::id::is_absolute_uri(s)
}

fn is_language(s: &str) -> bool {
    (2..=35).contains(&s.len())
        && s.split('-')
            .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Where a consent stands at a given instant, as ISO/IEC TS 27560 (and DPV's
/// `ConsentStatus`) name the states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentState {
    /// Given, and neither expired nor withdrawn: access is permitted.
    Active,
    /// The duration has run out (`now >= expiresAt`).
    Expired,
    /// The citizen withdrew it. Takes precedence over expiry.
    Withdrawn,
}

/// A granted consent, as stored and as returned to callers. The state is not stored: it
/// is derived from the times by [`ConsentRecord::state`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentRecord {
    /// The record's id (27560 record identifier).
    pub consent_id: ConsentId,
    /// When consent was given (Kantara `consentTimestamp`).
    #[serde(rename = "consentTimestamp")]
    pub granted_at: Timestamp,
    /// The first instant at which the consent no longer permits access.
    pub expires_at: Timestamp,
    /// When the citizen withdrew it, if they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_at: Option<Timestamp>,
    /// The request as granted; categories sorted and without duplicates.
    #[serde(flatten)]
    pub request: ConsentRequest,
}

impl ConsentRecord {
    /// Builds the record of a grant at `granted_at`, validating the request.
    pub fn grant(
        consent_id: ConsentId,
        mut request: ConsentRequest,
        granted_at: Timestamp,
    ) -> Result<Self, RequestError> {
        let expires_at = request.validate(granted_at)?;
        request.data_categories.sort_unstable();
        request.data_categories.dedup();
        Ok(ConsentRecord {
            consent_id,
            granted_at,
            expires_at,
            withdrawn_at: None,
            request,
        })
    }

    /// The state at `now`. A withdrawal counts from the moment it is recorded, whatever
    /// `now` says; expiry is exclusive: at exactly `expires_at` the consent is expired.
    pub fn state(&self, now: Timestamp) -> ConsentState {
        if self.withdrawn_at.is_some() {
            ConsentState::Withdrawn
        } else if now >= self.expires_at {
            ConsentState::Expired
        } else {
            ConsentState::Active
        }
    }

    /// The purpose text shown to the citizen.
    pub fn purpose_text(&self) -> &str {
        self.request
            .purpose_description
            .as_deref()
            .unwrap_or(self.request.purpose.describe())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn request(days: u32) -> ConsentRequest {
        ConsentRequest {
            tenant: Tenant::new("adelaide").unwrap(),
            subject: "citizen-7f3a".into(),
            recipient: "app:parking-app:adelaide".into(),
            purpose: Purpose::ServiceProvision,
            purpose_description: None,
            data_categories: vec![DataCategory::ParkingSession, DataCategory::Location],
            duration_days: days,
            jurisdiction: "AU-SA".into(),
            collection_method: "citizen portal opt-in form".into(),
            policy_url: "https://adelaide.example/privacy".into(),
            language: "en-AU".into(),
            pii_controller: PiiController::named("City of Adelaide"),
        }
    }

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn twelve_months_is_calendar_months() {
        assert_eq!(
            latest_expiry(at("2025-01-15T09:30:00Z")),
            at("2026-01-15T09:30:00Z")
        );
        // 29 February has no anniversary in a common year: 28 February.
        assert_eq!(
            latest_expiry(at("2024-02-29T23:59:59.999Z")),
            at("2025-02-28T23:59:59.999Z")
        );
        assert_eq!(
            latest_expiry(at("2027-02-28T00:00:00Z")),
            at("2028-02-28T00:00:00Z")
        );
    }

    #[test]
    fn three_sixty_six_days_only_across_a_leap_day() {
        // 2024-01-15 → 2025-01-15 contains 2024-02-29: 366 days fit.
        assert!(expiry(at("2024-01-15T00:00:00Z"), 366).is_ok());
        // 2025-01-15 → 2026-01-15 has 365 days.
        assert!(expiry(at("2025-01-15T00:00:00Z"), 365).is_ok());
        let e = expiry(at("2025-01-15T00:00:00Z"), 366).unwrap_err();
        assert!(
            matches!(e, RequestError::ExceedsTwelveMonths { max_days: 365, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("at most 365 days"), "{e}");
        assert_eq!(
            expiry(at("2025-01-15T00:00:00Z"), 0),
            Err(RequestError::DurationOutOfRange(0))
        );
        assert_eq!(
            expiry(at("2025-01-15T00:00:00Z"), 367),
            Err(RequestError::DurationOutOfRange(367))
        );
    }

    #[test]
    fn validation_names_the_bad_field() {
        let t = at("2026-03-01T00:00:00Z");
        let mut r = request(30);
        r.subject = "two words".into();
        assert!(matches!(r.validate(t), Err(RequestError::BadSubject(_))));
        let mut r = request(30);
        r.data_categories.clear();
        let e = r.validate(t).unwrap_err();
        assert!(e.to_string().contains("energy-consumption"), "{e}");
        let mut r = request(30);
        r.jurisdiction = "Australia".into();
        assert!(matches!(
            r.validate(t),
            Err(RequestError::BadJurisdiction(_))
        ));
        let mut r = request(30);
        r.policy_url = "javascript:alert(1)".into();
        assert!(matches!(r.validate(t), Err(RequestError::BadPolicyUrl(_))));
        let mut r = request(30);
        r.pii_controller.name.clear();
        assert!(matches!(
            r.validate(t),
            Err(RequestError::BadController("name"))
        ));
        assert!(request(30).validate(t).is_ok());
    }

    #[test]
    fn unknown_vocabulary_is_refused_with_the_list() {
        let e = "parking".parse::<DataCategory>().unwrap_err();
        assert!(e.to_string().contains("parking-session"), "{e}");
        let e = serde_json::from_str::<Purpose>("\"marketing\"").unwrap_err();
        assert!(e.to_string().contains("urban-planning"), "{e}");
    }

    #[test]
    fn state_boundaries() {
        let t = at("2026-03-01T00:00:00Z");
        let mut rec = ConsentRecord::grant(ConsentId::from_bytes([7; 16]), request(1), t).unwrap();
        let end = rec.expires_at;
        assert_eq!(end.as_millis() - t.as_millis(), DAY_MS);
        assert_eq!(
            rec.state(Timestamp::from_millis(end.as_millis() - 1)),
            ConsentState::Active
        );
        assert_eq!(rec.state(end), ConsentState::Expired);
        rec.withdrawn_at = Some(t);
        assert_eq!(rec.state(t), ConsentState::Withdrawn);
    }

    #[test]
    fn grant_sorts_and_dedups_categories() {
        let mut r = request(30);
        r.data_categories = vec![
            DataCategory::Mobility,
            DataCategory::Location,
            DataCategory::Mobility,
        ];
        let rec =
            ConsentRecord::grant(ConsentId::from_bytes([1; 16]), r, Timestamp::from_millis(0))
                .unwrap();
        assert_eq!(
            rec.request.data_categories,
            vec![DataCategory::Location, DataCategory::Mobility]
        );
    }

    #[test]
    fn consent_id_rejects_non_hex() {
        assert!("00".parse::<ConsentId>().is_err());
        assert!(
            "G0000000000000000000000000000000"
                .parse::<ConsentId>()
                .is_err()
        );
        assert!(
            "0123456789ABCDEF0123456789abcdef"
                .parse::<ConsentId>()
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn civil_days_agree_with_the_model_clock(days in -719_162i64..2_932_896) {
            // The model prints times through chrono: an independent check of the arithmetic.
            let t = Timestamp::from_millis(days * DAY_MS);
            let (y, m, d) = civil_from_days(days);
            let text = t.to_string();
            prop_assert_eq!(&text[..10], format!("{y:04}-{m:02}-{d:02}"));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn latest_expiry_is_365_or_366_days(ms in 0i64..4_102_444_800_000) {
            let t = Timestamp::from_millis(ms);
            let span = latest_expiry(t).as_millis() - ms;
            prop_assert!(span == 365 * DAY_MS || span == 366 * DAY_MS, "{t}: {span}");
            prop_assert!(expiry(t, 365).is_ok());
        }

        #[test]
        fn consent_id_text_round_trip(bytes in any::<[u8; 16]>()) {
            let id = ConsentId::from_bytes(bytes);
            prop_assert_eq!(id.to_string().parse::<ConsentId>().unwrap(), id);
            let j = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<ConsentId>(&j).unwrap(), id);
        }

        #[test]
        fn record_json_round_trip(
            bytes in any::<[u8; 16]>(),
            ms in 0i64..4_102_444_800_000,
            days in 1u32..=365,
            cats in proptest::sample::subsequence(DataCategory::ALL.to_vec(), 1..=6),
            purpose in proptest::sample::select(Purpose::ALL.to_vec()),
            withdrawn in proptest::option::of(0i64..4_102_444_800_000),
            desc in proptest::option::of("[a-zA-Z][a-zA-Z ,.]{0,40}[a-z]"),
        ) {
            let mut r = request(days);
            r.data_categories = cats;
            r.purpose = purpose;
            r.purpose_description = desc;
            let mut rec = ConsentRecord::grant(
                ConsentId::from_bytes(bytes), r, Timestamp::from_millis(ms)).unwrap();
            rec.withdrawn_at = withdrawn.map(Timestamp::from_millis);
            let j = serde_json::to_string(&rec).unwrap();
            prop_assert_eq!(serde_json::from_str::<ConsentRecord>(&j).unwrap(), rec);
        }
    }
}
