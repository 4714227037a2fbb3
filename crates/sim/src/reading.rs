//! Readings: what each device observes at an instant, in the units its feed uses.
//!
//! A reading is a pure function of the device, the city and the instant: there is no
//! state to keep, so a sender can compute "now" and a backfill can compute "two hours
//! ago" the same way, and tests can ask for 07:30 and 03:00 directly. Cumulative meter
//! registers are the exact integral of the daily profile, so they only ever grow.
//!
//! Attribute names are the Smart Data Models terms (checked against
//! `fixtures/smart-data-models/<Type>/schema.json`). Two deliberate simplifications:
//! `WaterConsumptionObserved.flow` is not in that schema (it has only weekly
//! `maxFlow`/`minFlow`); it borrows the `flow` term of `WaterObserved` so dashboards can
//! show the instantaneous rate. And the single-phase `ACMeasurement` meters report
//! `phaseVoltage` and `current` as plain numbers (the L1 value) rather than the
//! schema's per-phase objects, since SenML records carry scalars.
//!
//! Units per feed are chosen so that Polity's normalization has work to do; see the
//! crate docs for the table.

use std::sync::Arc;

use polity_model::{EntityId, Tenant, Timestamp};

use crate::{
    nation::{City, CitySpec, Device, DeviceKind, Feed},
    patterns::{self, ELECTRICITY, PARKING, TRAFFIC, WATER},
    prng,
};

/// A value as a device reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadingValue {
    /// A number.
    Number(f64),
    /// Text, e.g. a parking bay's `free` / `occupied`.
    Text(String),
    /// A flag, e.g. `congested`.
    Bool(bool),
}

impl ReadingValue {
    /// The number, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ReadingValue::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ReadingValue::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// One attribute of a reading.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrValue {
    /// The Smart Data Models attribute term, e.g. `waterConsumption`.
    pub name: &'static str,
    /// The value, in `unit`.
    pub value: ReadingValue,
    /// The UN/CEFACT common code of the value's unit, if it has one (`LTR`, `WHR`, `HM`).
    pub unit: Option<&'static str>,
    /// The same unit as a SenML symbol (RFC 8428 / RFC 8798), if it has one (`l`, `Wh`).
    pub senml_unit: Option<&'static str>,
}

/// A WGS 84 point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    /// Longitude, degrees.
    pub lon: f64,
    /// Latitude, degrees.
    pub lat: f64,
}

/// Everything one device reports at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The device id (`adelaide-00042`).
    pub device: Arc<str>,
    /// The city's tenant.
    pub tenant: Tenant,
    /// The entity the reading is about.
    pub entity_id: EntityId,
    /// The short Smart Data Models type name.
    pub entity_type: &'static str,
    /// When it was observed.
    pub observed_at: Timestamp,
    /// The observed attributes.
    pub values: Vec<AttrValue>,
    /// Where the device is.
    pub location: GeoPoint,
}

impl Reading {
    /// The attribute called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.values.iter().find(|a| a.name == name)
    }

    /// The numeric value of `name`, if present and a number.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(|a| a.value.as_f64())
    }
}

/// A unit as both a UN/CEFACT code and a SenML symbol.
type Unit = (Option<&'static str>, Option<&'static str>);

const NONE: Unit = (None, None);
const RATIO: Unit = (None, Some("/"));

const MS_PER_DAY: i64 = 86_400_000;
/// Day numbers count from 2024-01-01 so cumulative registers look like a meter in service
/// for a couple of years rather than since 1970.
const SERVICE_START_DAY: i64 = 19_723;

/// Local time of day in hours `[0, 24)` and the local day number, for a city.
pub fn local_time(spec: &CitySpec, t: Timestamp) -> (f64, i64) {
    let ms = t.as_millis() + i64::from(spec.utc_offset_minutes) * 60_000;
    let day = ms.div_euclid(MS_PER_DAY);
    let hour = ms.rem_euclid(MS_PER_DAY) as f64 / 3_600_000.0;
    (hour, day)
}

impl City {
    /// What `device` reports at `t`, in this city's feed units.
    pub fn reading(&self, device: &Device, t: Timestamp) -> Reading {
        reading(&self.spec, device, t)
    }

    /// Readings for the last `hours` hours before `now`, one per device every `step`
    /// (each device at its own offset inside the step), oldest first. `polity up` sends
    /// these first so temporal queries and the overview have history from the start.
    pub fn backfill(&self, now: Timestamp, hours: f64, step: std::time::Duration) -> Vec<Reading> {
        let step_ms = (step.as_millis() as i64).max(1000);
        let steps = ((hours * 3_600_000.0) / step_ms as f64).floor().max(0.0) as i64;
        let mut out = Vec::with_capacity(steps as usize * self.devices.len());
        for k in (1..=steps).rev() {
            for d in &self.devices {
                let offset = (d.key % step_ms as u64) as i64;
                let t = Timestamp::from_millis(now.as_millis() - k * step_ms + offset);
                out.push(self.reading(d, t));
            }
        }
        out
    }
}

/// The default backfill step: one reading per device every 15 minutes.
pub const BACKFILL_STEP: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What `device` (of the city `spec`) reports at `t`, in the units of the city's feed.
pub fn reading(spec: &CitySpec, device: &Device, t: Timestamp) -> Reading {
    let (h, day) = local_time(spec, t);
    let ms = t.as_millis() as u64;
    // Noise that changes every reading, and noise that is stable over ~15 minutes.
    let fast = |salt: u64| prng::noise(&[device.key, ms, salt]);
    let slow = |salt: u64| prng::noise(&[device.key, ms / 900_000, salt]);
    let fixed = |salt: u64| prng::noise(&[device.key, salt]);
    let feed = spec.feed;
    let values = match device.kind {
        DeviceKind::WaterMeter => water(device, feed, h, day, &fast, &fixed),
        DeviceKind::ElectricityMeter => electricity(device, feed, h, day, &fast, &slow, &fixed),
        DeviceKind::ParkingSensor => parking_spot(device, h, ms),
        DeviceKind::StreetParking => street_parking(device, h, &slow),
        DeviceKind::TrafficCounter => traffic(device, feed, h, &fast, &fixed),
        DeviceKind::AirStation => air(spec, device, feed, h, day, &fast, &slow),
    };
    Reading {
        device: device.id.clone(),
        tenant: spec.tenant.clone(),
        entity_id: device.entity_id.clone(),
        entity_type: device.kind.entity_type(),
        observed_at: t,
        values,
        location: GeoPoint {
            lon: device.lon,
            lat: device.lat,
        },
    }
}

fn num(name: &'static str, v: f64, (unit, senml_unit): Unit) -> AttrValue {
    AttrValue {
        name,
        value: ReadingValue::Number(sig(v, 6)),
        unit,
        senml_unit,
    }
}

/// `x` rounded to `digits` significant digits: payloads stay short, values stay honest.
fn sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let p = digits - 1 - x.abs().log10().floor() as i32;
    if p <= 0 {
        return x.round();
    }
    let m = 10f64.powi(p);
    (x * m).round() / m
}

/// Smart water meter. Daily use 250–1200 l per household; flow is intermittent (a
/// household either draws water or does not), with the mean following [`WATER`].
fn water(
    d: &Device,
    feed: Feed,
    h: f64,
    day: i64,
    fast: &dyn Fn(u64) -> f64,
    fixed: &dyn Fn(u64) -> f64,
) -> Vec<AttrValue> {
    let daily_l = 480.0 * d.scale;
    let mean_lph = daily_l / 24.0 * patterns::normalized(&WATER, h);
    // Probability the household is drawing water right now; flow while drawing keeps
    // the mean at `mean_lph`.
    let p_on = (0.12 * patterns::normalized(&WATER, h)).clamp(0.02, 0.6);
    let on = (fast(1) + 1.0) / 2.0 < p_on;
    let flow_lph = if on {
        mean_lph / p_on * (1.0 + 0.25 * fast(2))
    } else {
        0.0
    };
    let base_l = 40_000.0 + 360_000.0 * (fixed(3) + 1.0) / 2.0;
    let days = (day - SERVICE_START_DAY) as f64;
    let total_l = base_l + daily_l * (days + patterns::normalized_integral(&WATER, h) / 24.0);
    match feed {
        // Adelaide's meters speak SenML: register in m³, flow in m³/s.
        Feed::CoapSenml => vec![
            num(
                "waterConsumption",
                total_l / 1000.0,
                (Some("MTQ"), Some("m3")),
            ),
            num("flow", flow_lph / 3_600_000.0, (Some("MQS"), Some("m3/s"))),
        ],
        // Melbourne's vendor reports litres and litres per minute.
        Feed::MqttJson => vec![
            num("waterConsumption", total_l, (Some("LTR"), Some("l"))),
            num("flow", flow_lph / 60.0, (Some("L2"), None)),
        ],
        Feed::HttpNgsiLd => vec![
            num("waterConsumption", total_l, (Some("LTR"), Some("l"))),
            num("flow", flow_lph, (Some("E32"), None)),
        ],
    }
}

/// Single-phase household electricity meter, AU mains (230 V nominal, 216–253 V allowed,
/// typically 235–245 V measured), 50 Hz. About 15 kWh a day for an average household.
fn electricity(
    d: &Device,
    feed: Feed,
    h: f64,
    day: i64,
    fast: &dyn Fn(u64) -> f64,
    slow: &dyn Fn(u64) -> f64,
    fixed: &dyn Fn(u64) -> f64,
) -> Vec<AttrValue> {
    let daily_kwh = 15.0 * d.scale;
    let shape = patterns::normalized(&ELECTRICITY, h);
    let power_w =
        (daily_kwh * 1000.0 / 24.0 * shape * (1.0 + 0.12 * slow(1) + 0.05 * fast(2))).max(40.0);
    // Voltage sags a little with the feeder's evening load.
    let voltage =
        (240.5 + 2.5 * fixed(3) - 2.0 * (shape - 1.0) + 0.6 * fast(4)).clamp(216.0, 253.0);
    let pf = 0.93 + 0.04 * fixed(5);
    let current = power_w / (voltage * pf);
    let frequency = 50.0 + 0.03 * slow(6) + 0.005 * fast(7);
    let base_kwh = 2_000.0 + 18_000.0 * (fixed(8) + 1.0) / 2.0;
    let days = (day - SERVICE_START_DAY) as f64;
    let energy_kwh =
        base_kwh + daily_kwh * (days + patterns::normalized_integral(&ELECTRICITY, h) / 24.0);
    let (power, energy) = match feed {
        // Adelaide: SenML base units, energy register in Wh.
        Feed::CoapSenml => (
            num("totalActivePower", power_w, (Some("WTT"), Some("W"))),
            num(
                "totalActiveEnergyImport",
                energy_kwh * 1000.0,
                (Some("WHR"), Some("Wh")),
            ),
        ),
        // Melbourne: power in kW.
        Feed::MqttJson => (
            num(
                "totalActivePower",
                power_w / 1000.0,
                (Some("KWT"), Some("kW")),
            ),
            num(
                "totalActiveEnergyImport",
                energy_kwh,
                (Some("KWH"), Some("kWh")),
            ),
        ),
        Feed::HttpNgsiLd => (
            num("totalActivePower", power_w, (Some("WTT"), Some("W"))),
            num(
                "totalActiveEnergyImport",
                energy_kwh,
                (Some("KWH"), Some("kWh")),
            ),
        ),
    };
    vec![
        power,
        energy,
        num("phaseVoltage", voltage, (Some("VLT"), Some("V"))),
        num("current", current, (Some("AMP"), Some("A"))),
        num("totalPowerFactor", pf, RATIO),
        num("frequency", frequency, (Some("HTZ"), Some("Hz"))),
    ]
}

/// Probability a bay is occupied at hour `h`, shaded by how central/busy the bay is.
fn occupancy_probability(d: &Device, h: f64) -> f64 {
    (patterns::level(&PARKING, h) * (0.75 + 0.25 * d.scale)).clamp(0.02, 0.98)
}

/// In-ground bay sensor: `free` / `occupied`, re-drawn every stay (20–60 minutes,
/// per bay), with the chance of `occupied` following business hours.
fn parking_spot(d: &Device, h: f64, ms: u64) -> Vec<AttrValue> {
    let stay_ms = 1_200_000 + d.key % 2_400_000;
    let slot = (ms + d.key % stay_ms) / stay_ms;
    let occupied = prng::unit(&[d.key, slot, 11]) < occupancy_probability(d, h);
    vec![AttrValue {
        name: "status",
        value: ReadingValue::Text(if occupied { "occupied" } else { "free" }.into()),
        unit: None,
        senml_unit: None,
    }]
}

/// Kerbside block counter: 12–41 bays, occupied count following business hours.
fn street_parking(d: &Device, h: f64, slow: &dyn Fn(u64) -> f64) -> Vec<AttrValue> {
    let total = 12 + (d.key % 30) as i64;
    let p = occupancy_probability(d, h);
    let occupied = ((total as f64 * p * (1.0 + 0.1 * slow(12))).round() as i64).clamp(0, total);
    vec![
        num("totalSpotNumber", total as f64, NONE),
        num("occupiedSpotNumber", occupied as f64, NONE),
        num("availableSpotNumber", (total - occupied) as f64, NONE),
    ]
}

/// Vehicles counted per 5-minute period at a lane capacity of 1800 vehicles/hour.
const TRAFFIC_PERIOD_CAPACITY: f64 = 150.0;

/// One-lane loop counter: intensity over the last 5 minutes, mean speed (falling as the
/// lane fills), lane occupancy fraction, congestion flag, mean headway in seconds.
fn traffic(
    d: &Device,
    feed: Feed,
    h: f64,
    fast: &dyn Fn(u64) -> f64,
    fixed: &dyn Fn(u64) -> f64,
) -> Vec<AttrValue> {
    let busy = (0.55 + 0.35 * d.scale).min(1.05);
    let ratio = (patterns::level(&TRAFFIC, h) * busy * (1.0 + 0.08 * fast(21))).clamp(0.0, 1.0);
    let intensity = (TRAFFIC_PERIOD_CAPACITY * ratio).round();
    let free_speed = [40.0, 50.0, 60.0, 60.0, 70.0, 80.0][(d.key % 6) as usize];
    let speed_kmh =
        free_speed * (1.0 - 0.6 * ratio.powf(2.5)) * (1.0 + 0.04 * fast(22)) + fixed(23);
    let occupancy = (ratio * 0.32 + 0.01 * fast(24)).clamp(0.0, 1.0);
    let headway = if intensity > 0.0 {
        300.0 / intensity
    } else {
        300.0
    };
    let speed = match feed {
        // Sydney's legacy counter vendor reports miles per hour.
        Feed::HttpNgsiLd => num(
            "averageVehicleSpeed",
            speed_kmh / 1.609_344,
            (Some("HM"), None),
        ),
        _ => num(
            "averageVehicleSpeed",
            speed_kmh,
            (Some("KMH"), Some("km/h")),
        ),
    };
    vec![
        num("intensity", intensity, NONE),
        speed,
        num("occupancy", occupancy, RATIO),
        AttrValue {
            name: "congested",
            value: ReadingValue::Bool(ratio > 0.8),
            unit: None,
            senml_unit: None,
        },
        num("averageHeadwayTime", headway, (Some("SEC"), Some("s"))),
    ]
}

/// Roadside air station: NO2 and particulates rise with traffic (lagging it by half an
/// hour), temperature follows the daily curve (with day-to-day weather), relative
/// humidity moves opposite to temperature.
fn air(
    spec: &CitySpec,
    d: &Device,
    feed: Feed,
    h: f64,
    day: i64,
    fast: &dyn Fn(u64) -> f64,
    slow: &dyn Fn(u64) -> f64,
) -> Vec<AttrValue> {
    let traffic = patterns::level(&TRAFFIC, h - 0.5) * (0.7 + 0.3 * d.scale);
    let weather = 3.0 * prng::noise(&[prng::key(spec.tenant.as_str()), day as u64, 31]);
    let no2 = (7.0 + 42.0 * traffic + 3.0 * slow(32) + fast(33)).max(1.0);
    let pm10 = (11.0 + 14.0 * traffic + 0.8 * weather.abs() + 2.0 * slow(34) + fast(35)).max(2.0);
    let pm25 = (0.42 * pm10 + 0.8 * slow(36) + 0.3 * fast(37)).max(1.0);
    let temp_c = patterns::temperature(spec.temp_min_c, spec.temp_max_c, h)
        + weather
        + 0.4 * slow(38)
        + 0.1 * fast(39);
    let span = (spec.temp_max_c - spec.temp_min_c).max(1.0);
    let rh = (0.85 - 0.5 * (temp_c - weather - spec.temp_min_c) / span + 0.04 * slow(40))
        .clamp(0.15, 0.98);
    let temperature = match feed {
        // Melbourne's air-station vendor reports degrees Fahrenheit.
        Feed::MqttJson => num(
            "temperature",
            temp_c * 9.0 / 5.0 + 32.0,
            (Some("FAH"), None),
        ),
        _ => num("temperature", temp_c, (Some("CEL"), Some("Cel"))),
    };
    let ugm3 = (Some("GQ"), Some("ug/m3"));
    vec![
        num("no2", no2, ugm3),
        num("pm10", pm10, ugm3),
        num("pm25", pm25, ugm3),
        temperature,
        num("relativeHumidity", rh, RATIO),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nation::NationSpec;

    /// 2026-11-25 at local hour `h` in `spec`'s time zone.
    fn at(spec: &CitySpec, h: f64) -> Timestamp {
        let midnight_utc = Timestamp::parse("2026-11-25T00:00:00Z")
            .unwrap()
            .as_millis();
        let ms =
            midnight_utc + (h * 3_600_000.0) as i64 - i64::from(spec.utc_offset_minutes) * 60_000;
        Timestamp::from_millis(ms)
    }

    fn cities() -> Vec<City> {
        NationSpec::demo(3000).build()
    }

    /// The mean of `f(reading)` over all devices of `kind` in `city` at local hour `h`,
    /// averaged over a few minutes so intermittent signals are smoothed.
    fn mean_at(city: &City, kind: DeviceKind, h: f64, f: impl Fn(&Reading) -> f64) -> f64 {
        let mut sum = 0.0;
        let mut n = 0.0;
        for d in city.devices.iter().filter(|d| d.kind == kind) {
            for m in 0..4 {
                sum += f(&city.reading(d, at(&city.spec, h + m as f64 / 60.0)));
                n += 1.0;
            }
        }
        sum / n
    }

    #[test]
    fn local_time_uses_the_city_offset() {
        let adl = CitySpec::adelaide();
        let t = Timestamp::parse("2026-11-25T01:10:36.000Z").unwrap();
        let (h, _) = local_time(&adl, t);
        assert!(
            (h - (11.0 + 40.0 / 60.0 + 36.0 / 3600.0)).abs() < 1e-9,
            "{h}"
        );
        let (h, _) = local_time(&CitySpec::sydney(), t);
        assert!(
            (h - (12.0 + 10.0 / 60.0 + 36.0 / 3600.0)).abs() < 1e-9,
            "{h}"
        );
    }

    #[test]
    fn readings_are_deterministic() {
        let c = &cities()[0];
        let t = at(&c.spec, 7.5);
        for d in c.devices.iter().step_by(97) {
            assert_eq!(c.reading(d, t), c.reading(d, t));
        }
    }

    #[test]
    fn water_flow_peaks_in_the_morning_and_the_register_only_grows() {
        for c in &cities() {
            let lph = |r: &Reading| match c.spec.feed {
                Feed::CoapSenml => r.number("flow").unwrap() * 3_600_000.0,
                Feed::MqttJson => r.number("flow").unwrap() * 60.0,
                Feed::HttpNgsiLd => r.number("flow").unwrap(),
            };
            let morning = mean_at(c, DeviceKind::WaterMeter, 7.5, lph);
            let evening = mean_at(c, DeviceKind::WaterMeter, 19.5, lph);
            let night = mean_at(c, DeviceKind::WaterMeter, 3.0, lph);
            assert!(
                morning > 3.0 * night && evening > 3.0 * night,
                "{morning} {evening} {night}"
            );
            // An average household draws ~20–100 l/h in the peak hour.
            assert!((20.0..150.0).contains(&morning), "{morning}");
            let d = c
                .devices
                .iter()
                .find(|d| d.kind == DeviceKind::WaterMeter)
                .unwrap();
            let mut last = 0.0;
            for i in 0..200 {
                let v = c
                    .reading(d, at(&c.spec, i as f64 * 0.25))
                    .number("waterConsumption")
                    .unwrap();
                assert!(v >= last, "register went backwards: {last} -> {v}");
                last = v;
            }
        }
    }

    #[test]
    fn electricity_peaks_in_the_evening_at_australian_mains_voltage() {
        let c = &cities()[2];
        let p = |r: &Reading| r.number("totalActivePower").unwrap();
        let evening = mean_at(c, DeviceKind::ElectricityMeter, 19.0, p);
        let night = mean_at(c, DeviceKind::ElectricityMeter, 3.0, p);
        assert!(evening > 2.5 * night, "{evening} {night}");
        assert!(
            (200.0..800.0).contains(&night) && (1000.0..3000.0).contains(&evening),
            "{night} {evening}"
        );
        for d in c
            .devices
            .iter()
            .filter(|d| d.kind == DeviceKind::ElectricityMeter)
            .take(200)
        {
            let r = c.reading(d, at(&c.spec, 19.0));
            let v = r.number("phaseVoltage").unwrap();
            assert!((225.0..=250.0).contains(&v), "{v}");
            let i = r.number("current").unwrap();
            let pf = r.number("totalPowerFactor").unwrap();
            assert!((i * v * pf - r.number("totalActivePower").unwrap()).abs() < 2.0);
            let f = r.number("frequency").unwrap();
            assert!((49.9..50.1).contains(&f), "{f}");
        }
        // Adelaide reports energy in Wh: a household register is in the millions.
        let a = &cities()[0];
        let d = a
            .devices
            .iter()
            .find(|d| d.kind == DeviceKind::ElectricityMeter)
            .unwrap();
        let r = a.reading(d, at(&a.spec, 12.0));
        let e = r.get("totalActiveEnergyImport").unwrap();
        assert_eq!((e.unit, e.senml_unit), (Some("WHR"), Some("Wh")));
        assert!(e.value.as_f64().unwrap() > 2_000_000.0);
    }

    #[test]
    fn parking_follows_business_hours() {
        for c in &cities() {
            let occ = |r: &Reading| {
                f64::from(u8::from(
                    r.get("status").unwrap().value.as_str() == Some("occupied"),
                ))
            };
            let lunch = mean_at(c, DeviceKind::ParkingSensor, 13.0, occ);
            let night = mean_at(c, DeviceKind::ParkingSensor, 3.0, occ);
            assert!(lunch > 0.7 && night < 0.2, "{lunch} {night}");
            let ratio = |r: &Reading| {
                r.number("occupiedSpotNumber").unwrap() / r.number("totalSpotNumber").unwrap()
            };
            let lunch = mean_at(c, DeviceKind::StreetParking, 13.0, ratio);
            let night = mean_at(c, DeviceKind::StreetParking, 3.0, ratio);
            assert!(lunch > 3.0 * night, "{lunch} {night}");
        }
    }

    #[test]
    fn traffic_rush_hour_is_busier_and_slower() {
        for c in &cities() {
            let to_kmh = if c.spec.feed == Feed::HttpNgsiLd {
                1.609_344
            } else {
                1.0
            };
            let q = |r: &Reading| r.number("intensity").unwrap();
            let v = |r: &Reading| r.number("averageVehicleSpeed").unwrap() * to_kmh;
            let (q8, q3) = (
                mean_at(c, DeviceKind::TrafficCounter, 8.0, q),
                mean_at(c, DeviceKind::TrafficCounter, 3.0, q),
            );
            let (v8, v3) = (
                mean_at(c, DeviceKind::TrafficCounter, 8.0, v),
                mean_at(c, DeviceKind::TrafficCounter, 3.0, v),
            );
            assert!(q8 > 10.0 * q3 && q8 <= 150.0, "{q8} {q3}");
            assert!(v8 < 0.8 * v3 && (35.0..90.0).contains(&v3), "{v8} {v3}");
        }
        let s = &cities()[2];
        let d = s
            .devices
            .iter()
            .find(|d| d.kind == DeviceKind::TrafficCounter)
            .unwrap();
        assert_eq!(
            s.reading(d, at(&s.spec, 8.0))
                .get("averageVehicleSpeed")
                .unwrap()
                .unit,
            Some("HM")
        );
    }

    #[test]
    fn air_quality_tracks_traffic_and_temperature_tracks_the_sun() {
        for c in &cities() {
            let no2 = |r: &Reading| r.number("no2").unwrap();
            let (rush, night) = (
                mean_at(c, DeviceKind::AirStation, 8.5, no2),
                mean_at(c, DeviceKind::AirStation, 3.5, no2),
            );
            assert!(
                rush > 2.0 * night && (2.0..120.0).contains(&rush),
                "{rush} {night}"
            );
            let pm = |r: &Reading| r.number("pm25").unwrap() / r.number("pm10").unwrap();
            assert!((0.3..0.6).contains(&mean_at(c, DeviceKind::AirStation, 12.0, pm)));
            let to_c = |r: &Reading| {
                let t = r.number("temperature").unwrap();
                if r.get("temperature").unwrap().unit == Some("FAH") {
                    (t - 32.0) * 5.0 / 9.0
                } else {
                    t
                }
            };
            let (afternoon, dawn) = (
                mean_at(c, DeviceKind::AirStation, 15.0, to_c),
                mean_at(c, DeviceKind::AirStation, 5.0, to_c),
            );
            assert!(
                afternoon > dawn + 5.0 && (5.0..35.0).contains(&dawn) && afternoon < 40.0,
                "{afternoon} {dawn}"
            );
            let rh = |r: &Reading| r.number("relativeHumidity").unwrap();
            assert!(
                mean_at(c, DeviceKind::AirStation, 5.0, rh)
                    > mean_at(c, DeviceKind::AirStation, 15.0, rh)
            );
        }
    }

    #[test]
    fn backfill_covers_the_window_oldest_first() {
        let c = &NationSpec::demo(60).build()[1];
        let now = Timestamp::parse("2026-11-25T01:00:00Z").unwrap();
        let b = c.backfill(now, 2.0, BACKFILL_STEP);
        assert_eq!(b.len(), 8 * 60);
        assert!(b.iter().all(|r| r.observed_at < now));
        assert!(
            b.iter()
                .all(|r| r.observed_at.as_millis() >= now.as_millis() - 2 * 3_600_000)
        );
        assert!(b.first().unwrap().observed_at < b.last().unwrap().observed_at);
    }

    #[test]
    fn significant_digits() {
        assert_eq!(sig(123.456_789, 4), 123.5);
        assert_eq!(sig(0.000_123_456, 3), 0.000_123);
        assert_eq!(sig(1_234_567.0, 3), 1_234_567.0f64.round());
        assert_eq!(sig(0.0, 3), 0.0);
    }
}
