//! Coarsening of personal locations (issue #3 §3).
//!
//! Owns the grid arithmetic; pure: no I/O, no keys.
//!
//! A location is snapped to the centre of a cell of a fixed grid whose cells are about
//! `grid_m` metres on each side:
//!
//! - rows are `grid_m / 111 320` degrees of latitude high, counted from the south pole
//!   (the last row, at the north pole, is cut short and its centre is the middle of
//!   what remains);
//! - each row is split into `floor(360° / w)` equal columns, where
//!   `w = row height / cos(latitude of the row's centre)`, so columns are never
//!   narrower than `grid_m` and always tile the full circle (at least one column; near
//!   the poles a row is a single cell).
//!
//! The result depends only on the cell, so coarsening is idempotent, and every location
//! in a cell gives the same output. Output coordinates are rounded to 7 decimals
//! (about 1 cm) for readable JSON; the rounded centre stays well inside its cell.
//!
//! # Lines and polygons become a point
//!
//! Any geometry other than a `Point` is replaced by the coarsened `Point` of the centre
//! of its bounding box. A precise polygon of a home, or the track of a trip, reveals as
//! much as a precise point, and keeping its shape on a coarse grid would still show its
//! extent; the bounding-box centre is chosen over the first position because the first
//! position of a track is where the trip began, often the person's home. Altitudes, a
//! GeoJSON `bbox` member and any other member are dropped. A bounding box that crosses
//! the antimeridian has its centre on the far side of the globe: the output is wrong
//! but no more revealing.
//!
//! # What this does not do
//!
//! Snapping is not anonymity: in a sparse area one cell may hold one house, and a
//! person moving near a cell boundary reveals more over time. Choose `grid_m` by the
//! density of the area, and aggregate before anything leaves the city.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Metres per degree of latitude (and of longitude at the equator), the usual
/// approximation on the WGS 84 ellipsoid.
pub const METRES_PER_DEGREE: f64 = 111_320.0;

/// The default grid for personal locations: 500 m, the size of a few city blocks.
pub const PERSONAL_GRID_M: u32 = 500;

/// The largest grid accepted: 1000 km.
pub const MAX_GRID_M: u32 = 1_000_000;

/// Nesting depth beyond which input is refused (a MultiPolygon needs 4).
const MAX_DEPTH: usize = 8;

/// Errors from coarsening.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LocationError {
    /// The policy's grid is 0 or larger than [`MAX_GRID_M`].
    #[error(
        "a coarsening grid of {0} m is invalid: use 1 to {MAX_GRID_M} metres (500 is the default for personal locations)"
    )]
    BadGrid(u32),
    /// The value is not a GeoJSON geometry this module understands.
    #[error(
        "not a GeoJSON geometry: {0}; send a Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon or GeometryCollection"
    )]
    NotGeometry(&'static str),
    /// A position is not `[longitude, latitude]` within range.
    #[error(
        "a position is invalid: {0}; positions are [longitude, latitude] with longitude in -180..180 and latitude in -90..90"
    )]
    BadPosition(&'static str),
}

/// How coarse personal locations are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationPolicy {
    /// The side of a grid cell in metres. Default [`PERSONAL_GRID_M`] (500 m).
    pub grid_m: u32,
}

impl Default for LocationPolicy {
    fn default() -> Self {
        LocationPolicy {
            grid_m: PERSONAL_GRID_M,
        }
    }
}

impl LocationPolicy {
    fn check(self) -> Result<(), LocationError> {
        if self.grid_m == 0 || self.grid_m > MAX_GRID_M {
            return Err(LocationError::BadGrid(self.grid_m));
        }
        Ok(())
    }
}

/// Coarsens a GeoJSON geometry: returns a `Point` at the centre of the grid cell (see
/// the [module docs](self)).
pub fn coarsen(geometry: &Value, policy: LocationPolicy) -> Result<Value, LocationError> {
    policy.check()?;
    let mut bbox = BBox::default();
    collect(geometry, &mut bbox, 0)?;
    let (lon, lat) = bbox
        .centre()
        .ok_or(LocationError::NotGeometry("it has no positions"))?;
    let (lon, lat) = coarsen_point(lon, lat, policy)?;
    Ok(json!({ "type": "Point", "coordinates": [lon, lat] }))
}

/// Coarsens one position: the centre of its grid cell, as `(longitude, latitude)`.
pub fn coarsen_point(
    lon: f64,
    lat: f64,
    policy: LocationPolicy,
) -> Result<(f64, f64), LocationError> {
    policy.check()?;
    check_position(lon, lat)?;
    let cell_lat = f64::from(policy.grid_m) / METRES_PER_DEGREE;
    let rows = (180.0 / cell_lat).ceil();
    let row = ((lat + 90.0) / cell_lat).floor().clamp(0.0, rows - 1.0);
    let south = -90.0 + row * cell_lat;
    let north = (south + cell_lat).min(90.0);
    let centre_lat = (south + north) / 2.0;

    // Never below ~0.57° from a pole: there a row is one cell anyway.
    let cos = centre_lat.to_radians().cos().max(1e-2);
    let cols = (360.0 * cos / cell_lat).floor().max(1.0);
    let cell_lon = 360.0 / cols;
    let col = ((lon + 180.0) / cell_lon).floor().clamp(0.0, cols - 1.0);
    let centre_lon = -180.0 + (col + 0.5) * cell_lon;
    Ok((round7(centre_lon), round7(centre_lat)))
}

fn round7(x: f64) -> f64 {
    let r = (x * 1e7).round() / 1e7;
    // -0.0 would serialize as "-0.0"; keep output canonical.
    if r == 0.0 { 0.0 } else { r }
}

fn check_position(lon: f64, lat: f64) -> Result<(), LocationError> {
    if !lon.is_finite() || !lat.is_finite() {
        return Err(LocationError::BadPosition(
            "a coordinate is not a finite number",
        ));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(LocationError::BadPosition("longitude out of range"));
    }
    if !(-90.0..=90.0).contains(&lat) {
        return Err(LocationError::BadPosition("latitude out of range"));
    }
    Ok(())
}

#[derive(Default)]
struct BBox(Option<(f64, f64, f64, f64)>);

impl BBox {
    fn add(&mut self, lon: f64, lat: f64) {
        self.0 = Some(match self.0 {
            None => (lon, lat, lon, lat),
            Some((w, s, e, n)) => (w.min(lon), s.min(lat), e.max(lon), n.max(lat)),
        });
    }

    fn centre(&self) -> Option<(f64, f64)> {
        self.0.map(|(w, s, e, n)| ((w + e) / 2.0, (s + n) / 2.0))
    }
}

/// Adds every position of a geometry to `bbox`, checking its structure.
fn collect(geometry: &Value, bbox: &mut BBox, depth: usize) -> Result<(), LocationError> {
    if depth > MAX_DEPTH {
        return Err(LocationError::NotGeometry("it is nested too deeply"));
    }
    let obj = geometry
        .as_object()
        .ok_or(LocationError::NotGeometry("it is not a JSON object"))?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or(LocationError::NotGeometry("it has no \"type\""))?;
    if kind == "GeometryCollection" {
        let members =
            obj.get("geometries")
                .and_then(Value::as_array)
                .ok_or(LocationError::NotGeometry(
                    "a GeometryCollection needs \"geometries\"",
                ))?;
        for g in members {
            collect(g, bbox, depth + 1)?;
        }
        return Ok(());
    }
    // How many array levels lie above a position, per type.
    let levels = match kind {
        "Point" => 0,
        "MultiPoint" | "LineString" => 1,
        "MultiLineString" | "Polygon" => 2,
        "MultiPolygon" => 3,
        _ => return Err(LocationError::NotGeometry("unknown \"type\"")),
    };
    let coords = obj
        .get("coordinates")
        .ok_or(LocationError::NotGeometry("it has no \"coordinates\""))?;
    positions(coords, levels, bbox)
}

fn positions(v: &Value, levels: usize, bbox: &mut BBox) -> Result<(), LocationError> {
    let arr = v
        .as_array()
        .ok_or(LocationError::BadPosition("coordinates are not arrays"))?;
    if levels > 0 {
        for item in arr {
            positions(item, levels - 1, bbox)?;
        }
        return Ok(());
    }
    if !(2..=3).contains(&arr.len()) {
        return Err(LocationError::BadPosition(
            "a position needs 2 or 3 numbers",
        ));
    }
    let num = |i: usize| {
        arr.get(i)
            .and_then(Value::as_f64)
            .ok_or(LocationError::BadPosition("a coordinate is not a number"))
    };
    let (lon, lat) = (num(0)?, num(1)?);
    if arr.len() == 3 {
        num(2)?;
    }
    check_position(lon, lat)?;
    bbox.add(lon, lat);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P500: LocationPolicy = LocationPolicy { grid_m: 500 };

    /// Great-circle distance in metres on a sphere whose degree is METRES_PER_DEGREE.
    fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
        let r = METRES_PER_DEGREE * 180.0 / std::f64::consts::PI;
        let (lon1, lat1, lon2, lat2) = (
            a.0.to_radians(),
            a.1.to_radians(),
            b.0.to_radians(),
            b.1.to_radians(),
        );
        let h = ((lat2 - lat1) / 2.0).sin().powi(2)
            + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
        2.0 * r * h.sqrt().asin()
    }

    fn point(v: &Value) -> (f64, f64) {
        assert_eq!(v["type"], "Point");
        (
            v["coordinates"][0].as_f64().unwrap(),
            v["coordinates"][1].as_f64().unwrap(),
        )
    }

    #[test]
    fn a_point_snaps_and_neighbours_share_a_cell() {
        // Adelaide GPO, and a spot 20 m away.
        let a = coarsen(
            &json!({"type": "Point", "coordinates": [138.5999, -34.9256]}),
            P500,
        )
        .unwrap();
        let b = coarsen(
            &json!({"type": "Point", "coordinates": [138.5997, -34.9255, 40.0]}),
            P500,
        )
        .unwrap();
        assert_eq!(a, b);
        let (lon, lat) = point(&a);
        assert_ne!((lon, lat), (138.5999, -34.9256));
        assert!(distance((lon, lat), (138.5999, -34.9256)) <= 0.75 * 500.0);
        // Altitude and other members are dropped.
        assert_eq!(a["coordinates"].as_array().unwrap().len(), 2);
        assert_eq!(a.as_object().unwrap().len(), 2);
    }

    #[test]
    fn polygons_and_lines_become_the_point_of_their_bbox_centre() {
        let home = json!({
            "type": "Polygon",
            "bbox": [138.6, -34.93, 138.6002, -34.9298],
            "coordinates": [[[138.6, -34.93], [138.6002, -34.93], [138.6002, -34.9298], [138.6, -34.93]]]
        });
        let out = coarsen(&home, P500).unwrap();
        let centre = coarsen_point(138.6001, -34.9299, P500).unwrap();
        assert_eq!(point(&out), centre);
        assert!(out.get("bbox").is_none());

        // A trip from home (first position) to work: the output is not home's cell.
        let trip =
            json!({"type": "LineString", "coordinates": [[138.60, -34.93], [138.70, -34.85]]});
        let out = point(&coarsen(&trip, P500).unwrap());
        assert_ne!(out, coarsen_point(138.60, -34.93, P500).unwrap());
        assert_eq!(out, coarsen_point(138.65, -34.89, P500).unwrap());

        let coll = json!({"type": "GeometryCollection", "geometries": [
            {"type": "Point", "coordinates": [10.0, 50.0]},
            {"type": "MultiPolygon", "coordinates": [[[[10.2, 50.2], [10.2, 50.0], [10.0, 50.2], [10.2, 50.2]]]]}
        ]});
        assert_eq!(
            point(&coarsen(&coll, P500).unwrap()),
            coarsen_point(10.1, 50.1, P500).unwrap()
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            json!(null),
            json!({"type": "Point"}),
            json!({"type": "Circle", "coordinates": [0, 0]}),
            json!({"type": "Point", "coordinates": [200, 0]}),
            json!({"type": "Point", "coordinates": [0, 91]}),
            json!({"type": "Point", "coordinates": [0]}),
            json!({"type": "Point", "coordinates": ["1", 2]}),
            json!({"type": "Point", "coordinates": [1, 2, 3, 4]}),
            json!({"type": "LineString", "coordinates": []}),
            json!({"type": "LineString", "coordinates": [1, 2]}),
            json!({"type": "Polygon", "coordinates": [[1, 2]]}),
            json!({"type": "GeometryCollection", "geometries": []}),
        ] {
            assert!(coarsen(&bad, P500).is_err(), "{bad}");
        }
        let mut deep = json!({"type": "Point", "coordinates": [0, 0]});
        for _ in 0..20 {
            deep = json!({"type": "GeometryCollection", "geometries": [deep]});
        }
        assert!(coarsen(&deep, P500).is_err());
        let p = json!({"type": "Point", "coordinates": [0, 0]});
        assert_eq!(
            coarsen(&p, LocationPolicy { grid_m: 0 }),
            Err(LocationError::BadGrid(0))
        );
        assert!(coarsen_point(f64::NAN, 0.0, P500).is_err());
    }

    #[test]
    fn poles_and_antimeridian_are_in_range_and_idempotent() {
        for (lon, lat) in [
            (180.0, 90.0),
            (-180.0, -90.0),
            (179.9999, 89.9999),
            (0.0, 90.0),
            (-180.0, 0.0),
            (180.0, 0.0),
        ] {
            for grid in [1, 500, 100_000, MAX_GRID_M] {
                let policy = LocationPolicy { grid_m: grid };
                let c = coarsen_point(lon, lat, policy).unwrap();
                assert!(
                    (-180.0..=180.0).contains(&c.0) && (-90.0..=90.0).contains(&c.1),
                    "{c:?}"
                );
                assert_eq!(
                    coarsen_point(c.0, c.1, policy).unwrap(),
                    c,
                    "{lon},{lat} grid {grid}"
                );
            }
        }
    }

    #[test]
    fn policy_default_and_config_shape() {
        assert_eq!(LocationPolicy::default().grid_m, 500);
        let p: LocationPolicy = serde_json::from_str(r#"{"grid_m": 250}"#).unwrap();
        assert_eq!(p.grid_m, 250);
        assert!(serde_json::from_str::<LocationPolicy>(r#"{"grid": 250}"#).is_err());
    }

    proptest! {
        #[test]
        fn output_is_near_the_input_and_idempotent(
            lon in -180.0f64..=180.0,
            lat in -80.0f64..=80.0,
            grid in 1u32..=20_000,
        ) {
            let policy = LocationPolicy { grid_m: grid };
            let input = json!({"type": "Point", "coordinates": [lon, lat]});
            let once = coarsen(&input, policy).unwrap();
            let twice = coarsen(&once, policy).unwrap();
            prop_assert_eq!(&once, &twice);
            let d = distance(point(&once), (lon, lat));
            // Half the cell diagonal is 0.707 grid; rounding to 1 cm adds a little.
            prop_assert!(d <= 0.75 * f64::from(grid) + 0.02, "{} m for grid {}", d, grid);
        }

        #[test]
        fn any_geometry_is_idempotent(
            pts in proptest::collection::vec((-179.0f64..179.0, -85.0f64..85.0), 1..8),
            grid in 1u32..=50_000,
        ) {
            let policy = LocationPolicy { grid_m: grid };
            let coords: Vec<Value> = pts.iter().map(|(x, y)| json!([x, y])).collect();
            let line = json!({"type": "MultiPoint", "coordinates": coords});
            let once = coarsen(&line, policy).unwrap();
            prop_assert_eq!(coarsen(&once, policy).unwrap(), once);
        }
    }
}
