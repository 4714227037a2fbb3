//! The demo nation: its cities, how each city's devices reach Polity, and the devices.
//!
//! This module owns the static shape of the simulation: which cities exist, where their
//! centres are, which feed (transport and encoding) each city uses, and the fleet of
//! devices laid out over each city. It is pure and deterministic for a given seed. It
//! does not compute readings (see [`mod@crate::reading`]) and does no I/O.

use std::sync::Arc;

use polity_model::{EntityId, Tenant};

use crate::prng::{self, SplitMix64};

/// How a city's devices deliver their readings to Polity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feed {
    /// SenML packs in CBOR (content-format 112), confirmable CoAP POST to `/senml`.
    CoapSenml,
    /// One plain JSON object per reading, published at QoS 1 to an MQTT broker.
    MqttJson,
    /// NGSI-LD normalized entities, POSTed in batches to `/ngsi-ld/v1/entityOperations/upsert`.
    HttpNgsiLd,
}

/// The kinds of device in the demo, each reporting as one FIWARE Smart Data Models type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKind {
    /// A household smart water meter: `WaterConsumptionObserved`.
    WaterMeter,
    /// A single-phase household electricity smart meter: `ACMeasurement`.
    ElectricityMeter,
    /// An in-ground sensor on one on-street parking bay: `ParkingSpot`.
    ParkingSensor,
    /// A kerbside counter for one street block of parking bays: `OnStreetParking`.
    StreetParking,
    /// An inductive-loop traffic counter on one lane: `TrafficFlowObserved`.
    TrafficCounter,
    /// A roadside air quality station: `AirQualityObserved`.
    AirStation,
}

impl DeviceKind {
    /// Every kind, in a fixed order.
    pub const ALL: [DeviceKind; 6] = [
        DeviceKind::WaterMeter,
        DeviceKind::ElectricityMeter,
        DeviceKind::ParkingSensor,
        DeviceKind::StreetParking,
        DeviceKind::TrafficCounter,
        DeviceKind::AirStation,
    ];

    /// The short Smart Data Models type name the device reports as.
    pub const fn entity_type(self) -> &'static str {
        match self {
            DeviceKind::WaterMeter => "WaterConsumptionObserved",
            DeviceKind::ElectricityMeter => "ACMeasurement",
            DeviceKind::ParkingSensor => "ParkingSpot",
            DeviceKind::StreetParking => "OnStreetParking",
            DeviceKind::TrafficCounter => "TrafficFlowObserved",
            DeviceKind::AirStation => "AirQualityObserved",
        }
    }

    /// The share of a city's devices of this kind: mostly meters, some parking, fewer
    /// traffic counters and air stations (3000 devices: 1350 water, 1200 electricity,
    /// 270 bays, 60 street blocks, 90 counters, 30 stations).
    pub const fn share(self) -> f64 {
        match self {
            DeviceKind::WaterMeter => 0.45,
            DeviceKind::ElectricityMeter => 0.40,
            DeviceKind::ParkingSensor => 0.09,
            DeviceKind::StreetParking => 0.02,
            DeviceKind::TrafficCounter => 0.03,
            DeviceKind::AirStation => 0.01,
        }
    }
}

/// One city of the demo nation.
#[derive(Debug, Clone, PartialEq)]
pub struct CitySpec {
    /// The tenant the city's data lives in; also used in ids and topics (`adelaide`).
    pub tenant: Tenant,
    /// The display name (`Adelaide`).
    pub name: String,
    /// City centre longitude, WGS 84 degrees.
    pub lon: f64,
    /// City centre latitude, WGS 84 degrees.
    pub lat: f64,
    /// Devices are placed inside `[min_lon, min_lat, max_lon, max_lat]` (keeps them on land).
    pub bounds: [f64; 4],
    /// Fixed offset of local time from UTC in minutes (daylight time in November).
    pub utc_offset_minutes: i32,
    /// How the city's devices reach Polity.
    pub feed: Feed,
    /// Typical November daily minimum temperature, °C.
    pub temp_min_c: f64,
    /// Typical November daily maximum temperature, °C.
    pub temp_max_c: f64,
}

impl CitySpec {
    /// Adelaide: ACDT (UTC+10:30), SenML over CoAP.
    pub fn adelaide() -> Self {
        CitySpec {
            tenant: tenant("adelaide"),
            name: "Adelaide".into(),
            lon: 138.6007,
            lat: -34.9285,
            bounds: [138.50, -35.02, 138.72, -34.82],
            utc_offset_minutes: 630,
            feed: Feed::CoapSenml,
            temp_min_c: 13.0,
            temp_max_c: 26.0,
        }
    }

    /// Melbourne: AEDT (UTC+11:00), JSON over MQTT.
    pub fn melbourne() -> Self {
        CitySpec {
            tenant: tenant("melbourne"),
            name: "Melbourne".into(),
            lon: 144.9631,
            lat: -37.8136,
            bounds: [144.86, -37.87, 145.08, -37.73],
            utc_offset_minutes: 660,
            feed: Feed::MqttJson,
            temp_min_c: 11.0,
            temp_max_c: 22.5,
        }
    }

    /// Sydney: AEDT (UTC+11:00), NGSI-LD over HTTP.
    pub fn sydney() -> Self {
        CitySpec {
            tenant: tenant("sydney"),
            name: "Sydney".into(),
            lon: 151.2093,
            lat: -33.8688,
            bounds: [151.10, -33.95, 151.27, -33.80],
            utc_offset_minutes: 660,
            feed: Feed::HttpNgsiLd,
            temp_min_c: 16.5,
            temp_max_c: 24.5,
        }
    }
}

fn tenant(s: &str) -> Tenant {
    // The names above are valid tenant literals; the fallback is unreachable.
    Tenant::new(s).unwrap_or_else(|_| unreachable!("`{s}` is a valid tenant"))
}

/// The whole demo nation: its cities, how many devices each has, and the seed that
/// makes everything reproducible.
#[derive(Debug, Clone, PartialEq)]
pub struct NationSpec {
    /// The cities.
    pub cities: Vec<CitySpec>,
    /// Devices per city. Default 3000 (200 messages/s per city at a 15 s report interval).
    pub devices_per_city: usize,
    /// Seed for layout, per-device variation, readings and faults. Default `0x90117`.
    pub seed: u64,
    /// Fraction of messages deliberately malformed so dead letters are exercised.
    /// Default 0.001 (0.1 %); 0 turns faults off.
    pub fault_rate: f64,
}

/// Default devices per city.
pub const DEFAULT_DEVICES_PER_CITY: usize = 3000;
/// Default seed.
pub const DEFAULT_SEED: u64 = 0x90117;
/// Default fault rate (0.1 %).
pub const DEFAULT_FAULT_RATE: f64 = 0.001;

impl Default for NationSpec {
    fn default() -> Self {
        NationSpec::demo(DEFAULT_DEVICES_PER_CITY)
    }
}

impl NationSpec {
    /// Adelaide (CoAP/SenML), Melbourne (MQTT/JSON) and Sydney (HTTP/NGSI-LD), each with
    /// `devices_per_city` devices, the default seed and the default fault rate.
    pub fn demo(devices_per_city: usize) -> Self {
        NationSpec {
            cities: vec![
                CitySpec::adelaide(),
                CitySpec::melbourne(),
                CitySpec::sydney(),
            ],
            devices_per_city,
            seed: DEFAULT_SEED,
            fault_rate: DEFAULT_FAULT_RATE,
        }
    }

    /// Lays out every city's devices.
    pub fn build(&self) -> Vec<City> {
        self.cities
            .iter()
            .map(|c| City::build(c.clone(), self.devices_per_city, self.seed, self.fault_rate))
            .collect()
    }
}

/// One simulated device.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Stable device id, `<city>-<n>` with `n` zero-padded to 5 digits (`adelaide-00042`).
    pub id: Arc<str>,
    /// The entity the device reports as, `urn:ngsi-ld:<Type>:<device id>`.
    pub entity_id: EntityId,
    /// What the device is.
    pub kind: DeviceKind,
    /// Where it is: longitude, WGS 84 degrees.
    pub lon: f64,
    /// Where it is: latitude, WGS 84 degrees.
    pub lat: f64,
    /// Per-device scale of its signal around the kind's typical level (household size,
    /// street busyness), roughly 0.4 to 2.5.
    pub scale: f64,
    /// Per-device stable key mixed into every random draw of its readings.
    pub key: u64,
}

/// A city with its devices laid out: the unit each sender drives.
#[derive(Debug, Clone, PartialEq)]
pub struct City {
    /// The city.
    pub spec: CitySpec,
    /// Its devices, in id order.
    pub devices: Vec<Device>,
    /// The nation seed.
    pub seed: u64,
    /// Fraction of malformed messages, see [`NationSpec::fault_rate`].
    pub fault_rate: f64,
}

impl City {
    /// Lays out `n` devices over `spec`, deterministically from `seed`.
    pub fn build(spec: CitySpec, n: usize, seed: u64, fault_rate: f64) -> City {
        let counts = kind_counts(n);
        let mut rng = SplitMix64::new(prng::hash(&[seed, prng::key(spec.tenant.as_str())]));
        let mut devices = Vec::with_capacity(n);
        let mut index = 0usize;
        for (kind, count) in DeviceKind::ALL.into_iter().zip(counts) {
            for _ in 0..count {
                let id: Arc<str> = format!("{}-{:05}", spec.tenant, index).into();
                let (lon, lat) = place(&spec, kind, &mut rng);
                // Log-normal-ish spread: most devices near 1, a long tail of big users.
                let scale = (0.45 * rng.normal()).exp().clamp(0.4, 2.5);
                let entity_id = EntityId::urn(kind.entity_type(), &id)
                    .unwrap_or_else(|_| unreachable!("`{id}` is a valid URN local part"));
                devices.push(Device {
                    key: prng::hash(&[seed, prng::key(&id)]),
                    id,
                    entity_id,
                    kind,
                    lon,
                    lat,
                    scale,
                });
                index += 1;
            }
        }
        City {
            spec,
            devices,
            seed,
            fault_rate,
        }
    }
}

/// How many devices of each kind (in [`DeviceKind::ALL`] order) a city of `n` devices
/// has: the shares rounded down, at least one of each kind when `n` allows, and the
/// remainder given to water meters.
pub fn kind_counts(n: usize) -> [usize; 6] {
    let mut counts = [0usize; 6];
    if n == 0 {
        return counts;
    }
    let min = usize::from(n >= DeviceKind::ALL.len());
    for (c, k) in counts.iter_mut().zip(DeviceKind::ALL) {
        *c = ((n as f64 * k.share()).floor() as usize).max(min);
    }
    // Take back any excess the minimum created, from the biggest kinds first.
    while counts.iter().sum::<usize>() > n {
        if let Some(big) = counts.iter_mut().max() {
            *big -= 1;
        }
    }
    let rest = n - counts.iter().sum::<usize>();
    counts[0] += rest;
    counts
}

/// A point for a device of `kind`: meters spread over the suburbs, parking and air
/// stations concentrated near the centre, traffic counters along arterials in between.
fn place(spec: &CitySpec, kind: DeviceKind, rng: &mut SplitMix64) -> (f64, f64) {
    let radius_km = match kind {
        DeviceKind::WaterMeter | DeviceKind::ElectricityMeter => 10.0,
        DeviceKind::TrafficCounter => 8.0,
        DeviceKind::ParkingSensor | DeviceKind::StreetParking => 3.0,
        DeviceKind::AirStation => 6.0,
    };
    let [min_lon, min_lat, max_lon, max_lat] = spec.bounds;
    let km_per_deg_lat = 111.32;
    let km_per_deg_lon = 111.32 * spec.lat.to_radians().cos();
    for _ in 0..64 {
        // Denser near the centre: radius ∝ u (not √u) gives density ∝ 1/r.
        let r = radius_km * rng.next_f64();
        let a = std::f64::consts::TAU * rng.next_f64();
        let lon = spec.lon + r * a.cos() / km_per_deg_lon;
        let lat = spec.lat + r * a.sin() / km_per_deg_lat;
        if (min_lon..=max_lon).contains(&lon) && (min_lat..=max_lat).contains(&lat) {
            return (round6(lon), round6(lat));
        }
    }
    (spec.lon, spec.lat)
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_has_three_cities_with_their_feeds() {
        let n = NationSpec::demo(3000);
        let names: Vec<_> = n
            .cities
            .iter()
            .map(|c| c.tenant.as_str().to_owned())
            .collect();
        assert_eq!(names, ["adelaide", "melbourne", "sydney"]);
        assert_eq!(n.cities[0].feed, Feed::CoapSenml);
        assert_eq!(n.cities[1].feed, Feed::MqttJson);
        assert_eq!(n.cities[2].feed, Feed::HttpNgsiLd);
        assert_eq!(n.cities[0].utc_offset_minutes, 630);
        assert_eq!(n.cities[2].utc_offset_minutes, 660);
        assert_eq!(n.fault_rate, 0.001);
    }

    #[test]
    fn kind_counts_add_up_and_favour_meters() {
        assert_eq!(kind_counts(3000), [1350, 1200, 270, 60, 90, 30]);
        for n in [0, 1, 5, 6, 7, 10, 99, 1000, 3001] {
            let c = kind_counts(n);
            assert_eq!(c.iter().sum::<usize>(), n, "{n}: {c:?}");
            if n >= 6 {
                assert!(c.iter().all(|&k| k >= 1), "{n}: {c:?}");
            }
        }
    }

    #[test]
    fn layout_is_deterministic_and_on_land_near_the_centre() {
        let a = NationSpec::demo(500).build();
        let b = NationSpec::demo(500).build();
        assert_eq!(a, b);
        let mut other = NationSpec::demo(500);
        other.seed = 1;
        assert_ne!(other.build()[0].devices, a[0].devices);
        for city in &a {
            assert_eq!(city.devices.len(), 500);
            let [x0, y0, x1, y1] = city.spec.bounds;
            for d in &city.devices {
                assert!(
                    (x0..=x1).contains(&d.lon) && (y0..=y1).contains(&d.lat),
                    "{d:?}"
                );
                let dx = (d.lon - city.spec.lon) * 111.32 * city.spec.lat.to_radians().cos();
                let dy = (d.lat - city.spec.lat) * 111.32;
                assert!((dx * dx + dy * dy).sqrt() <= 10.01, "{d:?}");
            }
        }
        let d = &a[0].devices[0];
        assert_eq!(&*d.id, "adelaide-00000");
        assert_eq!(
            d.entity_id.as_str(),
            "urn:ngsi-ld:WaterConsumptionObserved:adelaide-00000"
        );
        let ids: std::collections::HashSet<_> =
            a.iter().flat_map(|c| &c.devices).map(|d| &d.id).collect();
        assert_eq!(ids.len(), 1500);
    }
}
