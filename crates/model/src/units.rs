//! Units as UN/CEFACT Recommendation 20 common codes, the codes NGSI-LD `unitCode` uses.
//!
//! This module owns the table of units Polity knows, the conversion between
//! commensurable units, the choice of one canonical unit per quantity kind that ingest
//! normalizes to, and the mapping from SenML unit symbols (RFC 8428 and the RFC 8798
//! secondary units) to common codes. It must not know about attributes or entities.
//!
//! Every conversion is affine: `canonical = (value − zero) × num ÷ den`. Factors are kept
//! as integer ratios where the definition is exact (1 US gallon = 3 785 411 784 / 10⁹
//! litres), so that defined values convert to their defined results bit for bit.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UN/CEFACT common code: 2 or 3 upper-case letters or digits, e.g. `CEL`, `LTR`, `KWH`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitCode([u8; 3]);

/// The text is not shaped like a UN/CEFACT common code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a UN/CEFACT common code (2 or 3 letters or digits, e.g. CEL, LTR, KWH)")]
pub struct UnitCodeError(pub String);

impl UnitCode {
    /// Parses a code such as `"CEL"`.
    pub fn new(s: &str) -> Result<Self, UnitCodeError> {
        let b = s.as_bytes();
        if !(2..=3).contains(&b.len())
            || !b
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(UnitCodeError(s.chars().take(16).collect()));
        }
        let mut a = [b' '; 3];
        a[..b.len()].copy_from_slice(b);
        Ok(UnitCode(a))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        let n = if self.0[2] == b' ' { 2 } else { 3 };
        std::str::from_utf8(&self.0[..n]).unwrap_or("")
    }

    /// What Polity knows about this unit, if it is in the table.
    pub fn info(&self) -> Option<&'static UnitInfo> {
        UNITS.iter().find(|u| u.code == self.as_str())
    }

    /// Builds a code from a table literal. Only for codes known to be well formed.
    const fn lit(s: &str) -> UnitCode {
        let b = s.as_bytes();
        let mut a = [b' '; 3];
        a[0] = b[0];
        a[1] = b[1];
        if b.len() > 2 {
            a[2] = b[2];
        }
        UnitCode(a)
    }
}

impl fmt::Debug for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnitCode({})", self.as_str())
    }
}

impl fmt::Display for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for UnitCode {
    type Err = UnitCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnitCode::new(s)
    }
}

impl Serialize for UnitCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for UnitCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        UnitCode::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The physical quantity a unit measures. Only units of the same kind convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuantityKind {
    /// Thermodynamic temperature; canonical °C (`CEL`).
    Temperature,
    /// Volume; canonical litre (`LTR`).
    Volume,
    /// Volume flow; canonical litre per hour (`E32`).
    VolumeFlow,
    /// Energy; canonical kilowatt hour (`KWH`).
    Energy,
    /// Power; canonical watt (`WTT`).
    Power,
    /// Electric potential; canonical volt (`VLT`).
    Voltage,
    /// Electric current; canonical ampere (`AMP`).
    Current,
    /// Frequency; canonical hertz (`HTZ`).
    Frequency,
    /// Speed; canonical kilometre per hour (`KMH`).
    Speed,
    /// Length; canonical metre (`MTR`).
    Length,
    /// Area; canonical square metre (`MTK`).
    Area,
    /// Mass; canonical kilogram (`KGM`).
    Mass,
    /// Duration; canonical second (`SEC`).
    Time,
    /// Pressure; canonical hectopascal (`A97`), the unit weather stations report.
    Pressure,
    /// Mass concentration in air; canonical µg/m³ (`GQ`).
    MassConcentration,
    /// Amount fraction (gas mixing ratio); canonical ppm (`59`).
    AmountFraction,
    /// Percentage (e.g. relative humidity, occupancy); canonical percent (`P1`).
    Percentage,
    /// Illuminance; canonical lux (`LUX`).
    Illuminance,
    /// Sound level; canonical decibel (`2N`).
    SoundLevel,
    /// Plane angle (e.g. wind direction); canonical degree (`DD`).
    Angle,
    /// Irradiance; canonical watt per square metre (`D54`).
    Irradiance,
    /// A count of things (vehicles, people); canonical one (`C62`).
    Count,
}

/// One row of the unit table.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitInfo {
    /// The UN/CEFACT common code.
    pub code: &'static str,
    /// The Rec 20 name.
    pub name: &'static str,
    /// The usual symbol.
    pub symbol: &'static str,
    /// What the unit measures.
    pub kind: QuantityKind,
    /// Numerator of the factor to the kind's canonical unit.
    pub num: f64,
    /// Denominator of the factor to the kind's canonical unit.
    pub den: f64,
    /// The value, in this unit, that is zero in the canonical unit's scale (only
    /// temperatures have one).
    pub zero: f64,
}

impl UnitInfo {
    /// This unit's code.
    pub fn unit_code(&self) -> UnitCode {
        UnitCode::lit(self.code)
    }

    /// The factor to the canonical unit, `num / den`.
    pub fn factor(&self) -> f64 {
        self.num / self.den
    }

    /// `value` in this unit, expressed in the kind's canonical unit.
    pub fn to_canonical(&self, value: f64) -> f64 {
        (value - self.zero) * self.num / self.den
    }

    /// `value` in the kind's canonical unit, expressed in this unit.
    pub fn from_canonical(&self, value: f64) -> f64 {
        value * self.den / self.num + self.zero
    }
}

const fn u(
    code: &'static str,
    name: &'static str,
    symbol: &'static str,
    kind: QuantityKind,
    num: f64,
    den: f64,
) -> UnitInfo {
    UnitInfo {
        code,
        name,
        symbol,
        kind,
        num,
        den,
        zero: 0.0,
    }
}

use QuantityKind as Q;

/// The units Polity knows, from UN/CEFACT Recommendation 20 (rev. 17), chosen for what
/// city platforms and the Smart Data Models report.
pub static UNITS: &[UnitInfo] = &[
    // Temperature: canonical °C.
    u("CEL", "degree Celsius", "°C", Q::Temperature, 1.0, 1.0),
    UnitInfo {
        code: "FAH",
        name: "degree Fahrenheit",
        symbol: "°F",
        kind: Q::Temperature,
        num: 5.0,
        den: 9.0,
        zero: 32.0,
    },
    UnitInfo {
        code: "KEL",
        name: "kelvin",
        symbol: "K",
        kind: Q::Temperature,
        num: 1.0,
        den: 1.0,
        zero: 273.15,
    },
    // Volume: canonical litre.
    u("LTR", "litre", "l", Q::Volume, 1.0, 1.0),
    u("MTQ", "cubic metre", "m³", Q::Volume, 1000.0, 1.0),
    u("MLT", "millilitre", "ml", Q::Volume, 1.0, 1000.0),
    u(
        "GLL",
        "gallon (US)",
        "gal (US)",
        Q::Volume,
        3_785_411_784.0,
        1e9,
    ),
    u("GLI", "gallon (UK)", "gal (UK)", Q::Volume, 454_609.0, 1e5),
    // Volume flow: canonical litre per hour.
    u("E32", "litre per hour", "l/h", Q::VolumeFlow, 1.0, 1.0),
    u("L2", "litre per minute", "l/min", Q::VolumeFlow, 60.0, 1.0),
    u(
        "MQH",
        "cubic metre per hour",
        "m³/h",
        Q::VolumeFlow,
        1000.0,
        1.0,
    ),
    u(
        "MQS",
        "cubic metre per second",
        "m³/s",
        Q::VolumeFlow,
        3_600_000.0,
        1.0,
    ),
    // Energy: canonical kWh.
    u("KWH", "kilowatt hour", "kW·h", Q::Energy, 1.0, 1.0),
    u("WHR", "watt hour", "W·h", Q::Energy, 1.0, 1000.0),
    u(
        "MWH",
        "megawatt hour (1000 kW·h)",
        "MW·h",
        Q::Energy,
        1000.0,
        1.0,
    ),
    u("JOU", "joule", "J", Q::Energy, 1.0, 3_600_000.0),
    // Power: canonical watt.
    u("WTT", "watt", "W", Q::Power, 1.0, 1.0),
    u("KWT", "kilowatt", "kW", Q::Power, 1000.0, 1.0),
    u("MAW", "megawatt", "MW", Q::Power, 1_000_000.0, 1.0),
    // Electricity.
    u("VLT", "volt", "V", Q::Voltage, 1.0, 1.0),
    u("2Z", "millivolt", "mV", Q::Voltage, 1.0, 1000.0),
    u("KVT", "kilovolt", "kV", Q::Voltage, 1000.0, 1.0),
    u("AMP", "ampere", "A", Q::Current, 1.0, 1.0),
    u("4K", "milliampere", "mA", Q::Current, 1.0, 1000.0),
    u("HTZ", "hertz", "Hz", Q::Frequency, 1.0, 1.0),
    // Speed: canonical km/h.
    u("KMH", "kilometre per hour", "km/h", Q::Speed, 1.0, 1.0),
    u("MTS", "metre per second", "m/s", Q::Speed, 36.0, 10.0),
    u(
        "HM",
        "mile per hour (statute mile)",
        "mile/h",
        Q::Speed,
        1_609_344.0,
        1e6,
    ),
    u("KNT", "knot", "kn", Q::Speed, 1852.0, 1000.0),
    // Length: canonical metre.
    u("MTR", "metre", "m", Q::Length, 1.0, 1.0),
    u("KMT", "kilometre", "km", Q::Length, 1000.0, 1.0),
    u("CMT", "centimetre", "cm", Q::Length, 1.0, 100.0),
    u("MMT", "millimetre", "mm", Q::Length, 1.0, 1000.0),
    u(
        "SMI",
        "mile (statute mile)",
        "mile",
        Q::Length,
        1_609_344.0,
        1000.0,
    ),
    u("FOT", "foot", "ft", Q::Length, 3048.0, 10_000.0),
    u("INH", "inch", "in", Q::Length, 254.0, 10_000.0),
    // Area: canonical m².
    u("MTK", "square metre", "m²", Q::Area, 1.0, 1.0),
    u("HAR", "hectare", "ha", Q::Area, 10_000.0, 1.0),
    u("KMK", "square kilometre", "km²", Q::Area, 1_000_000.0, 1.0),
    // Mass: canonical kilogram.
    u("KGM", "kilogram", "kg", Q::Mass, 1.0, 1.0),
    u("GRM", "gram", "g", Q::Mass, 1.0, 1000.0),
    u("TNE", "tonne (metric ton)", "t", Q::Mass, 1000.0, 1.0),
    // Time: canonical second.
    u("SEC", "second [unit of time]", "s", Q::Time, 1.0, 1.0),
    u("C26", "millisecond", "ms", Q::Time, 1.0, 1000.0),
    u("MIN", "minute [unit of time]", "min", Q::Time, 60.0, 1.0),
    u("HUR", "hour", "h", Q::Time, 3600.0, 1.0),
    u("DAY", "day", "d", Q::Time, 86_400.0, 1.0),
    // Pressure: canonical hPa.
    u("A97", "hectopascal", "hPa", Q::Pressure, 1.0, 1.0),
    u("PAL", "pascal", "Pa", Q::Pressure, 1.0, 100.0),
    u("KPA", "kilopascal", "kPa", Q::Pressure, 10.0, 1.0),
    u("MBR", "millibar", "mbar", Q::Pressure, 1.0, 1.0),
    u(
        "BAR",
        "bar [unit of pressure]",
        "bar",
        Q::Pressure,
        1000.0,
        1.0,
    ),
    // Air quality.
    u(
        "GQ",
        "microgram per cubic metre",
        "µg/m³",
        Q::MassConcentration,
        1.0,
        1.0,
    ),
    u(
        "GP",
        "milligram per cubic metre",
        "mg/m³",
        Q::MassConcentration,
        1000.0,
        1.0,
    ),
    u("59", "part per million", "ppm", Q::AmountFraction, 1.0, 1.0),
    u(
        "61",
        "part per billion (US)",
        "ppb",
        Q::AmountFraction,
        1.0,
        1000.0,
    ),
    // Dimensionless and the rest.
    u("P1", "percent", "%", Q::Percentage, 1.0, 1.0),
    u("LUX", "lux", "lx", Q::Illuminance, 1.0, 1.0),
    u("2N", "decibel", "dB", Q::SoundLevel, 1.0, 1.0),
    u("DD", "degree [unit of angle]", "°", Q::Angle, 1.0, 1.0),
    u(
        "D54",
        "watt per square metre",
        "W/m²",
        Q::Irradiance,
        1.0,
        1.0,
    ),
    u("C62", "one", "1", Q::Count, 1.0, 1.0),
];

/// Why a value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The code is not in Polity's unit table.
    #[error(
        "unit `{0}` is not in Polity's unit table; use a UN/CEFACT Rec 20 common code such as CEL, LTR, KWH, KMH, or deliver the value without conversion"
    )]
    Unknown(String),
    /// The two units measure different things.
    #[error(
        "cannot convert {from} ({from_kind:?}) to {to} ({to_kind:?}): they measure different quantities; check the unitCode in the mapping"
    )]
    Incommensurable {
        /// The source unit.
        from: String,
        /// What it measures.
        from_kind: QuantityKind,
        /// The target unit.
        to: String,
        /// What it measures.
        to_kind: QuantityKind,
    },
    /// NaN or infinity cannot be converted.
    #[error("value is not a finite number; send a number such as 21.5")]
    NotFinite,
}

fn lookup(code: UnitCode) -> Result<&'static UnitInfo, UnitError> {
    code.info()
        .ok_or_else(|| UnitError::Unknown(code.as_str().to_owned()))
}

/// Converts `value` from one unit to another of the same quantity kind.
///
/// ```
/// use polity_model::units::{convert, UnitCode};
/// let c = convert(212.0, UnitCode::new("FAH").unwrap(), UnitCode::new("CEL").unwrap()).unwrap();
/// assert_eq!(c, 100.0);
/// ```
pub fn convert(value: f64, from: UnitCode, to: UnitCode) -> Result<f64, UnitError> {
    if !value.is_finite() {
        return Err(UnitError::NotFinite);
    }
    let f = lookup(from)?;
    if from == to {
        return Ok(value);
    }
    let t = lookup(to)?;
    if f.kind != t.kind {
        return Err(UnitError::Incommensurable {
            from: f.code.to_owned(),
            from_kind: f.kind,
            to: t.code.to_owned(),
            to_kind: t.kind,
        });
    }
    Ok(t.from_canonical(f.to_canonical(value)))
}

/// The canonical unit of a quantity kind: what Polity normalizes values of that kind to.
pub fn canonical_of(kind: QuantityKind) -> UnitCode {
    UnitCode::lit(match kind {
        Q::Temperature => "CEL",
        Q::Volume => "LTR",
        Q::VolumeFlow => "E32",
        Q::Energy => "KWH",
        Q::Power => "WTT",
        Q::Voltage => "VLT",
        Q::Current => "AMP",
        Q::Frequency => "HTZ",
        Q::Speed => "KMH",
        Q::Length => "MTR",
        Q::Area => "MTK",
        Q::Mass => "KGM",
        Q::Time => "SEC",
        Q::Pressure => "A97",
        Q::MassConcentration => "GQ",
        Q::AmountFraction => "59",
        Q::Percentage => "P1",
        Q::Illuminance => "LUX",
        Q::SoundLevel => "2N",
        Q::Angle => "DD",
        Q::Irradiance => "D54",
        Q::Count => "C62",
    })
}

/// The canonical unit Polity normalizes `from` to, if `from` is a known unit.
pub fn canonical(from: UnitCode) -> Option<UnitCode> {
    from.info().map(|i| canonical_of(i.kind))
}

/// Converts `value` in `unit` to the canonical unit of its kind. Unknown units and
/// non-finite values are returned unchanged: normalization never loses data.
pub fn normalize(value: f64, unit: UnitCode) -> (f64, UnitCode) {
    match canonical(unit) {
        Some(c) if c != unit => match convert(value, unit, c) {
            Ok(v) => (v, c),
            Err(_) => (value, unit),
        },
        _ => (value, unit),
    }
}

/// SenML unit symbols (RFC 8428 §12.1 registry and the RFC 8798 secondary units) with a
/// UN/CEFACT equivalent in the table.
static SENML: &[(&str, &str)] = &[
    // RFC 8428 SenML Units registry.
    ("m", "MTR"),
    ("kg", "KGM"),
    ("g", "GRM"),
    ("s", "SEC"),
    ("A", "AMP"),
    ("K", "KEL"),
    ("Hz", "HTZ"),
    ("Pa", "PAL"),
    ("J", "JOU"),
    ("W", "WTT"),
    ("V", "VLT"),
    ("Cel", "CEL"),
    ("lx", "LUX"),
    ("m2", "MTK"),
    ("m3", "MTQ"),
    ("l", "LTR"),
    ("m/s", "MTS"),
    ("m3/s", "MQS"),
    ("W/m2", "D54"),
    ("dB", "2N"),
    ("count", "C62"),
    // RFC 8428: `/` is a dimensionless ratio.
    ("/", "C62"),
    ("%", "P1"),
    ("%RH", "P1"),
    // RFC 8798 registry additions.
    ("deg", "DD"),
    // RFC 8798 Secondary Units registry.
    ("ms", "C26"),
    ("min", "MIN"),
    ("h", "HUR"),
    ("kW", "KWT"),
    ("Wh", "WHR"),
    ("kWh", "KWH"),
    ("mV", "2Z"),
    ("mA", "4K"),
    ("ug/m3", "GQ"),
    ("ppm", "59"),
    ("hPa", "A97"),
    ("mm", "MMT"),
    ("cm", "CMT"),
    ("km", "KMT"),
    ("km/h", "KMH"),
];

/// The UN/CEFACT code for a SenML unit symbol, if Polity knows one. Symbols are
/// case-sensitive, as in the SenML registry (`K` is kelvin, `k` is nothing).
pub fn from_senml(unit: &str) -> Option<UnitCode> {
    SENML
        .iter()
        .find(|(s, _)| *s == unit)
        .map(|(_, c)| UnitCode::lit(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> UnitCode {
        UnitCode::new(s).unwrap()
    }

    #[test]
    fn table_codes_are_well_formed_and_unique() {
        for (i, u) in UNITS.iter().enumerate() {
            assert_eq!(UnitCode::new(u.code).unwrap().as_str(), u.code);
            assert!(u.num > 0.0 && u.den > 0.0, "{}", u.code);
            assert!(
                UNITS[i + 1..].iter().all(|o| o.code != u.code),
                "duplicate {}",
                u.code
            );
            // The canonical unit of each kind is in the table and converts 1:1.
            let canon = canonical_of(u.kind).info().unwrap();
            assert_eq!((canon.kind, canon.factor(), canon.zero), (u.kind, 1.0, 0.0));
        }
        for (sym, code) in SENML {
            assert!(c(code).info().is_some(), "{sym} maps to unknown {code}");
        }
    }

    #[test]
    fn defined_values_convert_exactly() {
        assert_eq!(convert(212.0, c("FAH"), c("CEL")), Ok(100.0));
        assert_eq!(convert(32.0, c("FAH"), c("CEL")), Ok(0.0));
        assert_eq!(convert(100.0, c("CEL"), c("FAH")), Ok(212.0));
        assert_eq!(convert(-40.0, c("CEL"), c("FAH")), Ok(-40.0));
        assert_eq!(convert(0.0, c("KEL"), c("CEL")), Ok(-273.15));
        assert_eq!(convert(1.0, c("GLL"), c("LTR")), Ok(3.785411784));
        assert_eq!(convert(1.0, c("GLI"), c("LTR")), Ok(4.54609));
        assert_eq!(convert(2.5, c("MTQ"), c("LTR")), Ok(2500.0));
        assert_eq!(convert(1500.0, c("WHR"), c("KWH")), Ok(1.5));
        assert_eq!(convert(60.0, c("HM"), c("KMH")), Ok(96.56064));
        assert_eq!(convert(10.0, c("MTS"), c("KMH")), Ok(36.0));
        assert_eq!(convert(1.0, c("SMI"), c("MTR")), Ok(1609.344));
        assert_eq!(convert(1013.25, c("A97"), c("PAL")), Ok(101_325.0));
        assert_eq!(convert(2.0, c("HUR"), c("MIN")), Ok(120.0));
        assert_eq!(convert(0.5, c("GP"), c("GQ")), Ok(500.0));
        let k = convert(212.0, c("FAH"), c("KEL")).unwrap();
        assert!((k - 373.15).abs() < 1e-9, "{k}");
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = convert(1.0, c("CEL"), c("LTR")).unwrap_err();
        assert!(matches!(e, UnitError::Incommensurable { .. }));
        assert!(e.to_string().contains("different quantities"), "{e}");
        let e = convert(1.0, c("XYZ"), c("LTR")).unwrap_err();
        assert_eq!(e, UnitError::Unknown("XYZ".into()));
        assert!(e.to_string().contains("Rec 20"), "{e}");
        assert_eq!(
            convert(f64::NAN, c("CEL"), c("CEL")),
            Err(UnitError::NotFinite)
        );
        // Same unit, even unknown? Unknown is still an error: the code may be a typo.
        assert!(convert(1.0, c("XYZ"), c("XYZ")).is_err());
    }

    #[test]
    fn canonical_targets() {
        assert_eq!(canonical(c("FAH")), Some(c("CEL")));
        assert_eq!(canonical(c("MTQ")), Some(c("LTR")));
        assert_eq!(canonical(c("WHR")), Some(c("KWH")));
        assert_eq!(canonical(c("KWT")), Some(c("WTT")));
        assert_eq!(canonical(c("HM")), Some(c("KMH")));
        assert_eq!(canonical(c("SMI")), Some(c("MTR")));
        assert_eq!(canonical(c("ZZZ")), None);
        assert_eq!(normalize(2.0, c("GLL")), (7.570823568, c("LTR")));
        assert_eq!(normalize(5.0, c("ZZZ")), (5.0, c("ZZZ")));
        assert_eq!(normalize(5.0, c("CEL")), (5.0, c("CEL")));
    }

    #[test]
    fn senml_symbols() {
        assert_eq!(from_senml("Cel"), Some(c("CEL")));
        assert_eq!(from_senml("m3"), Some(c("MTQ")));
        assert_eq!(from_senml("kWh"), Some(c("KWH")));
        assert_eq!(from_senml("km/h"), Some(c("KMH")));
        assert_eq!(from_senml("%RH"), Some(c("P1")));
        assert_eq!(from_senml("hPa"), Some(c("A97")));
        assert_eq!(from_senml("cel"), None);
        assert_eq!(from_senml(""), None);
    }

    #[test]
    fn info_describes() {
        let i = c("GQ").info().unwrap();
        assert_eq!(
            (i.symbol, i.kind),
            ("µg/m³", QuantityKind::MassConcentration)
        );
        assert_eq!(i.unit_code(), c("GQ"));
        assert_eq!(c("59").as_str(), "59");
    }

    proptest! {
        #[test]
        fn there_and_back(v in -1e9f64..1e9, a in 0..UNITS.len(), b in 0..UNITS.len()) {
            let (a, b) = (&UNITS[a], &UNITS[b]);
            let (ca, cb) = (a.unit_code(), b.unit_code());
            match convert(v, ca, cb) {
                Ok(w) => {
                    let back = convert(w, cb, ca).unwrap();
                    prop_assert!((back - v).abs() <= 1e-9 * v.abs().max(1.0), "{v} -> {w} -> {back}");
                }
                Err(e) => prop_assert!(a.kind != b.kind, "{e}"),
            }
        }

        #[test]
        fn code_parse_round_trip(s in "[A-Z0-9]{2,3}") {
            let code = UnitCode::new(&s).unwrap();
            prop_assert_eq!(code.as_str(), s.as_str());
        }
    }
}
