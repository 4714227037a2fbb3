//! The demo-nation simulator: cities, devices, their daily patterns, and the device-side
//! senders that feed Polity over real protocols.
//!
//! `polity up` uses it to bring a small nation to life; `polity bench ingest` uses it as
//! a load generator. It owns the simulated world and the device side of each wire
//! protocol; it must not know anything about Polity's own ingest, storage or API beyond
//! what a real device or city platform would.
//!
//! # The nation
//!
//! [`NationSpec::demo`] gives three cities, each a tenant with its own feed:
//!
//! | city | tenant | local time (November) | feed |
//! |---|---|---|---|
//! | Adelaide | `adelaide` | ACDT, UTC+10:30 | SenML CBOR over CoAP ([`Feed::CoapSenml`]) |
//! | Melbourne | `melbourne` | AEDT, UTC+11:00 | JSON over MQTT ([`Feed::MqttJson`]) |
//! | Sydney | `sydney` | AEDT, UTC+11:00 | NGSI-LD batch upsert over HTTP ([`Feed::HttpNgsiLd`]) |
//!
//! Each city has `devices_per_city` devices (default 3000): 45 % water meters
//! (`WaterConsumptionObserved`), 40 % electricity meters (`ACMeasurement`), 9 % parking
//! bay sensors (`ParkingSpot`), 2 % kerbside block counters (`OnStreetParking`), 3 % lane
//! traffic counters (`TrafficFlowObserved`) and 1 % air stations (`AirQualityObserved`),
//! placed within 10 km of the centre. Entity ids are `urn:ngsi-ld:<Type>:<city>-<n>`.
//! Readings follow local-time daily patterns ([`patterns`]) and are a pure function of
//! seed, device and instant ([`reading()`]).
//!
//! # Units per feed
//!
//! Some feeds deliberately use non-canonical units so Polity's normalization is
//! exercised (canonical units are those of `polity_model::units::canonical_of`):
//!
//! | attribute | Adelaide (SenML `u`) | Melbourne (`unitCode`) | Sydney (`unitCode`) |
//! |---|---|---|---|
//! | `waterConsumption` | `m3` (MTQ) | LTR | LTR |
//! | `flow` | `m3/s` (MQS) | L2 (l/min) | E32 (l/h) |
//! | `totalActivePower` | `W` (WTT) | KWT (kW) | WTT |
//! | `totalActiveEnergyImport` | `Wh` (WHR) | KWH | KWH |
//! | `phaseVoltage` / `current` / `frequency` | `V` / `A` / `Hz` | VLT / AMP / HTZ | VLT / AMP / HTZ |
//! | `totalPowerFactor`, `occupancy`, `relativeHumidity` (ratios 0–1) | `/` | none | none |
//! | `averageVehicleSpeed` | `km/h` (KMH) | KMH | **HM (mph)**: the legacy counter vendor |
//! | `averageHeadwayTime` | `s` (SEC) | SEC | SEC |
//! | `no2`, `pm10`, `pm25` | `ug/m3` (GQ) | GQ | GQ |
//! | `temperature` | `Cel` (CEL) | **FAH**: the air-station vendor | CEL |
//! | `intensity`, `*SpotNumber` (counts), `status`, `congested` | none | none | none |
//!
//! # Faults
//!
//! A `fault_rate` share (default 0.1 %) of messages is malformed on purpose; see
//! [`fault`] for which faults each feed carries.
//!
//! # Senders
//!
//! [`send`] has one async sender per feed, each driving a city's devices in real time
//! (every device every `report_interval`, default 15 s, jittered: 3000 devices are
//! 200 messages/s) after an optional burst of backfilled history, until a
//! `watch::Receiver<bool>` turns true. [`send::spawn_city`] picks the right one.

pub mod encode;
pub mod fault;
pub mod nation;
pub mod patterns;
pub mod prng;
pub mod reading;
pub mod send;

pub use encode::{to_mqtt_json, to_ngsild_batch, to_senml_cbor, to_senml_json};
pub use fault::Fault;
pub use nation::{City, CitySpec, Device, DeviceKind, Feed, NationSpec};
pub use reading::{AttrValue, GeoPoint, Reading, ReadingValue, reading};
pub use send::{Endpoints, SendOptions, SenderStats, StatsSnapshot, spawn_city};
