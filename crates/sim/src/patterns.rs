//! Daily patterns: how city life varies over the local day.
//!
//! Each profile is a table of 24 hourly levels, interpolated linearly between hours and
//! wrapping at midnight. Profiles for consumption are normalised to a daily mean of 1
//! so that "average use × profile" keeps the daily total; their exact integral lets
//! cumulative meter readings stay consistent with the instantaneous values. This module
//! is pure numbers: it knows nothing about devices, units or encodings.

/// Residential water use: a sharp morning peak (showers, 06:00–09:00), a broad evening
/// peak (18:00–21:00) and a small night base (leaks, toilets).
pub const WATER: [f64; 24] = [
    0.25, 0.18, 0.15, 0.15, 0.22, 0.60, 1.60, 2.60, 2.30, 1.40, 1.00, 0.90, //
    0.95, 0.85, 0.75, 0.80, 0.95, 1.30, 1.90, 2.20, 1.90, 1.30, 0.80, 0.45,
];

/// Residential electricity: a night base load (fridge, standby), a modest morning bump
/// and the evening peak (cooking, lighting, air conditioning) from 17:00 to 21:00.
pub const ELECTRICITY: [f64; 24] = [
    0.55, 0.48, 0.45, 0.45, 0.47, 0.60, 0.90, 1.15, 1.00, 0.80, 0.72, 0.70, //
    0.70, 0.70, 0.72, 0.80, 1.00, 1.40, 1.95, 2.10, 1.90, 1.50, 1.05, 0.75,
];

/// Road traffic relative to lane capacity: AM rush 07:00–09:00, PM rush 16:00–18:00,
/// a busy middle of the day and a near-empty night.
pub const TRAFFIC: [f64; 24] = [
    0.06, 0.04, 0.03, 0.03, 0.05, 0.15, 0.45, 0.85, 0.92, 0.65, 0.52, 0.55, //
    0.60, 0.58, 0.58, 0.68, 0.85, 0.90, 0.70, 0.45, 0.32, 0.24, 0.16, 0.10,
];

/// Probability that an on-street bay near the centre is occupied: following business
/// hours, highest around lunch, some evening dining, nearly empty before dawn.
pub const PARKING: [f64; 24] = [
    0.12, 0.10, 0.08, 0.08, 0.08, 0.10, 0.20, 0.42, 0.68, 0.80, 0.84, 0.88, //
    0.92, 0.90, 0.86, 0.82, 0.74, 0.62, 0.55, 0.52, 0.45, 0.35, 0.25, 0.16,
];

/// The level of `table` at local hour `h` (any real; wraps modulo 24).
pub fn level(table: &[f64; 24], h: f64) -> f64 {
    let h = h.rem_euclid(24.0);
    let i = h.floor() as usize % 24;
    let f = h - h.floor();
    table[i] * (1.0 - f) + table[(i + 1) % 24] * f
}

/// The mean of `table` over a day (of its piecewise-linear interpolation).
pub fn mean(table: &[f64; 24]) -> f64 {
    table.iter().sum::<f64>() / 24.0
}

/// `level(table, h) / mean(table)`: the profile scaled to a daily mean of 1.
pub fn normalized(table: &[f64; 24], h: f64) -> f64 {
    level(table, h) / mean(table)
}

/// The integral of [`normalized`] from local midnight to hour `h` in `[0, 24]`, in
/// hours; 24 at the end of the day.
pub fn normalized_integral(table: &[f64; 24], h: f64) -> f64 {
    let h = h.clamp(0.0, 24.0);
    let whole = h.floor() as usize;
    let mut area = 0.0;
    for i in 0..whole.min(24) {
        area += (table[i] + table[(i + 1) % 24]) / 2.0;
    }
    if whole < 24 {
        let f = h - whole as f64;
        let a = table[whole];
        let b = level(table, h);
        area += (a + b) / 2.0 * f;
    }
    area / mean(table)
}

/// The daily air temperature curve: minimum just before sunrise (05:00), maximum mid
/// afternoon (15:00), a cosine rise and a slower evening decay.
pub fn temperature(min_c: f64, max_c: f64, h: f64) -> f64 {
    let h = h.rem_euclid(24.0);
    let x = if (5.0..15.0).contains(&h) {
        0.5 - 0.5 * (std::f64::consts::PI * (h - 5.0) / 10.0).cos()
    } else {
        let since = if h >= 15.0 { h - 15.0 } else { h + 9.0 };
        0.5 + 0.5 * (std::f64::consts::PI * since / 14.0).cos()
    };
    min_c + (max_c - min_c) * x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_interpolate_and_wrap() {
        assert_eq!(level(&WATER, 7.0), 2.60);
        assert!((level(&WATER, 7.5) - 2.45).abs() < 1e-12);
        assert!((level(&WATER, 23.5) - (0.45 + 0.25) / 2.0).abs() < 1e-12);
        assert_eq!(level(&WATER, 31.0), level(&WATER, 7.0));
        assert_eq!(level(&WATER, -17.0), level(&WATER, 7.0));
    }

    #[test]
    fn integral_covers_a_day_and_is_monotonic() {
        for t in [&WATER, &ELECTRICITY] {
            assert!((normalized_integral(t, 24.0) - 24.0).abs() < 1e-9);
            let mut last = 0.0;
            for i in 0..=240 {
                let v = normalized_integral(t, i as f64 / 10.0);
                assert!(v >= last);
                last = v;
            }
            // The trapezoid integral of one hour matches the mean of its endpoints.
            let one = normalized_integral(t, 8.0) - normalized_integral(t, 7.0);
            assert!((one - (normalized(t, 7.0) + normalized(t, 8.0)) / 2.0).abs() < 1e-9);
        }
    }

    #[test]
    fn temperature_is_coolest_at_dawn_and_warmest_mid_afternoon() {
        let t = |h| temperature(13.0, 26.0, h);
        assert!((t(5.0) - 13.0).abs() < 1e-9);
        assert!((t(15.0) - 26.0).abs() < 1e-9);
        assert!(t(12.0) > t(9.0) && t(18.0) > t(23.0));
        // Continuous at midnight.
        assert!((t(23.999) - t(0.0)).abs() < 0.01);
    }
}
