//! NGSI-LD geo-queries (GS CIM 009 4.10): `georel`, `geometry` and `coordinates`
//! parsed into a [`GeoQuery`], and evaluated against GeoJSON values.
//!
//! Relations are decided by the DE-9IM intersection matrix of the `geo` crate
//! (`within`, `contains`, `intersects`, `equals`, `disjoint`, `overlaps`), on
//! longitude/latitude as planar coordinates, as GeoJSON prescribes (RFC 7946 3.1.1).
//! `near` measures great-circle (haversine) distance in metres, from the query point
//! to the nearest point of the entity's geometry.

use geo::{
    Closest, ClosestPoint, Coord, Distance, Geometry, Haversine, LineString, MultiLineString,
    MultiPoint, MultiPolygon, Point, Polygon, Relate,
};
use serde_json::Value as Json;

/// A geo-relation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GeoRel {
    /// `near;maxDistance==m` and/or `near;minDistance==m` (metres).
    Near {
        /// Within this distance.
        max: Option<f64>,
        /// At least this far.
        min: Option<f64>,
    },
    /// The entity's geometry is within the query geometry.
    Within,
    /// The entity's geometry contains the query geometry.
    Contains,
    /// The two intersect.
    Intersects,
    /// The two are topologically equal.
    Equals,
    /// The two do not intersect.
    Disjoint,
    /// The two overlap (same dimension, each has points outside the other).
    Overlaps,
}

/// A parsed geo-query.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoQuery {
    /// The relation.
    pub rel: GeoRel,
    /// The query geometry.
    pub geometry: Geometry<f64>,
}

/// Why a geo-query cannot be used, in words for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GeoQueryError(pub String);

fn err(msg: impl Into<String>) -> GeoQueryError {
    GeoQueryError(msg.into())
}

fn coord(v: &Json) -> Result<Coord<f64>, GeoQueryError> {
    let a = v
        .as_array()
        .filter(|a| (2..=3).contains(&a.len()))
        .ok_or_else(|| err("a position is [longitude, latitude]"))?;
    let x = a[0].as_f64().ok_or_else(|| err("positions hold numbers"))?;
    let y = a[1].as_f64().ok_or_else(|| err("positions hold numbers"))?;
    if !x.is_finite() || !y.is_finite() {
        return Err(err("positions hold finite numbers"));
    }
    Ok(Coord { x, y })
}

fn coords(v: &Json) -> Result<Vec<Coord<f64>>, GeoQueryError> {
    v.as_array()
        .ok_or_else(|| err("expected an array of positions"))?
        .iter()
        .map(coord)
        .collect()
}

fn polygon(v: &Json) -> Result<Polygon<f64>, GeoQueryError> {
    let rings = v
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| err("a polygon is an array of linear rings"))?;
    let mut it = rings.iter().map(|r| coords(r).map(LineString::new));
    let exterior = it.next().unwrap_or_else(|| Ok(LineString::new(vec![])))?;
    let interiors = it.collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(exterior, interiors))
}

/// The geometry of a GeoJSON geometry type and its coordinates.
pub fn geometry_of(kind: &str, c: &Json) -> Result<Geometry<f64>, GeoQueryError> {
    Ok(match kind {
        "Point" => Geometry::Point(Point(coord(c)?)),
        "MultiPoint" => {
            Geometry::MultiPoint(MultiPoint(coords(c)?.into_iter().map(Point).collect()))
        }
        "LineString" => Geometry::LineString(LineString::new(coords(c)?)),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString(
            c.as_array()
                .ok_or_else(|| err("a MultiLineString is an array of lines"))?
                .iter()
                .map(|l| coords(l).map(LineString::new))
                .collect::<Result<_, _>>()?,
        )),
        "Polygon" => {
            // Some clients send a polygon's ring without the enclosing array; accept it.
            if c.as_array()
                .and_then(|a| a.first())
                .and_then(|p| p.as_array())
                .and_then(|p| p.first())
                .is_some_and(Json::is_number)
            {
                Geometry::Polygon(Polygon::new(LineString::new(coords(c)?), vec![]))
            } else {
                Geometry::Polygon(polygon(c)?)
            }
        }
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon(
            c.as_array()
                .ok_or_else(|| err("a MultiPolygon is an array of polygons"))?
                .iter()
                .map(polygon)
                .collect::<Result<_, _>>()?,
        )),
        other => {
            return Err(err(format!(
                "`{other}` is not a geometry; use Point, MultiPoint, LineString, MultiLineString, Polygon or MultiPolygon"
            )));
        }
    })
}

/// The geometry of a GeoJSON geometry object.
pub fn geometry_of_geojson(v: &Json) -> Result<Geometry<f64>, GeoQueryError> {
    let kind = v
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| err("a GeoJSON geometry needs a type"))?;
    let c = v
        .get("coordinates")
        .ok_or_else(|| err("a GeoJSON geometry needs coordinates"))?;
    geometry_of(kind, c)
}

fn distance_value(s: &str, name: &str) -> Result<f64, GeoQueryError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| err(format!("{name} must be a number of metres, not `{s}`")))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(err(format!(
            "{name} must be a non-negative number of metres"
        )))
    }
}

/// Parses a `georel` value.
pub fn parse_georel(s: &str) -> Result<GeoRel, GeoQueryError> {
    let mut parts = s.split(';');
    let name = parts.next().unwrap_or("").trim();
    let rest: Vec<&str> = parts.collect();
    let plain = |r: GeoRel| {
        if rest.is_empty() {
            Ok(r)
        } else {
            Err(err(format!("georel `{name}` takes no modifiers")))
        }
    };
    match name {
        "near" => {
            let (mut max, mut min) = (None, None);
            for m in &rest {
                match m.split_once("==") {
                    Some(("maxDistance", v)) => max = Some(distance_value(v, "maxDistance")?),
                    Some(("minDistance", v)) => min = Some(distance_value(v, "minDistance")?),
                    _ => {
                        return Err(err(format!(
                            "`{m}` is not a near modifier; use near;maxDistance==metres or near;minDistance==metres"
                        )));
                    }
                }
            }
            if max.is_none() && min.is_none() {
                return Err(err(
                    "near needs maxDistance or minDistance, e.g. near;maxDistance==2000",
                ));
            }
            Ok(GeoRel::Near { max, min })
        }
        "within" => plain(GeoRel::Within),
        "contains" => plain(GeoRel::Contains),
        "intersects" => plain(GeoRel::Intersects),
        "equals" => plain(GeoRel::Equals),
        "disjoint" => plain(GeoRel::Disjoint),
        "overlaps" => plain(GeoRel::Overlaps),
        other => Err(err(format!(
            "`{other}` is not a georel; use near, within, contains, intersects, equals, disjoint or overlaps"
        ))),
    }
}

impl GeoQuery {
    /// Parses `georel`, `geometry` and `coordinates` (a JSON array, as text or JSON).
    pub fn parse(georel: &str, geometry: &str, coordinates: &Json) -> Result<Self, GeoQueryError> {
        let rel = parse_georel(georel)?;
        let coords = match coordinates {
            Json::String(s) => serde_json::from_str::<Json>(s)
                .map_err(|_| err("coordinates must be a JSON array such as [8.68, 49.41]"))?,
            other => other.clone(),
        };
        let geometry = geometry_of(geometry, &coords)?;
        if matches!(rel, GeoRel::Near { .. }) && !matches!(geometry, Geometry::Point(_)) {
            return Err(err("near takes a Point geometry"));
        }
        Ok(GeoQuery { rel, geometry })
    }

    /// Whether a GeoJSON value satisfies the query; false for what is not GeoJSON.
    pub fn matches(&self, value: &Json) -> bool {
        let Ok(g) = geometry_of_geojson(value) else {
            return false;
        };
        self.matches_geometry(&g)
    }

    /// Whether `g` satisfies the query.
    pub fn matches_geometry(&self, g: &Geometry<f64>) -> bool {
        match self.rel {
            GeoRel::Near { max, min } => {
                let Geometry::Point(p) = self.geometry else {
                    return false;
                };
                let nearest = match g.closest_point(&p) {
                    Closest::Intersection(q) | Closest::SinglePoint(q) => q,
                    Closest::Indeterminate => return false,
                };
                let d = Haversine.distance(p, nearest);
                max.is_none_or(|m| d <= m) && min.is_none_or(|m| d >= m)
            }
            rel => {
                let m = g.relate(&self.geometry);
                match rel {
                    GeoRel::Within => m.is_within(),
                    GeoRel::Contains => m.is_contains(),
                    GeoRel::Intersects => m.is_intersects(),
                    // Exactly the same coordinates are equal even where DE-9IM gives up
                    // (a self-touching ring, for instance).
                    GeoRel::Equals => *g == self.geometry || m.is_equal_topo(),
                    GeoRel::Disjoint => m.is_disjoint(),
                    GeoRel::Overlaps => m.is_overlaps(),
                    GeoRel::Near { .. } => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(rel: &str, g: &str, c: &str) -> GeoQuery {
        GeoQuery::parse(rel, g, &json!(c)).unwrap()
    }

    #[test]
    fn near_measures_metres_on_the_sphere() {
        // Berlin Alexanderplatz to the Brandenburg Gate: about 2.3 km.
        let alex = json!({"type": "Point", "coordinates": [13.4132, 52.5219]});
        let gate = "[13.3777, 52.5163]";
        assert!(q("near;maxDistance==3000", "Point", gate).matches(&alex));
        assert!(!q("near;maxDistance==2000", "Point", gate).matches(&alex));
        assert!(q("near;minDistance==2000", "Point", gate).matches(&alex));
        assert!(!q("near;minDistance==3000", "Point", gate).matches(&alex));
    }

    #[test]
    fn relations_follow_de9im() {
        let square = "[[[0,0],[10,0],[10,10],[0,10],[0,0]]]";
        let inside = json!({"type": "Point", "coordinates": [5, 5]});
        let outside = json!({"type": "Point", "coordinates": [20, 5]});
        assert!(q("within", "Polygon", square).matches(&inside));
        assert!(!q("within", "Polygon", square).matches(&outside));
        assert!(q("disjoint", "Polygon", square).matches(&outside));
        assert!(q("intersects", "Polygon", square).matches(&inside));
        let poly = json!({"type": "Polygon", "coordinates": [[[0,0],[10,0],[10,10],[0,10],[0,0]]]});
        assert!(q("contains", "Point", "[5,5]").matches(&poly));
        assert!(q("equals", "Polygon", square).matches(&poly));
        assert!(
            q(
                "overlaps",
                "Polygon",
                "[[[5,5],[15,5],[15,15],[5,15],[5,5]]]"
            )
            .matches(&poly)
        );
        assert!(
            !q("overlaps", "Polygon", square).matches(&poly),
            "equal is not overlapping"
        );
    }

    #[test]
    fn bad_queries_say_what_to_fix() {
        for (rel, g, c, want) in [
            ("invalid", "Point", "[1,2]", "not a georel"),
            ("near", "Point", "[1,2]", "maxDistance or minDistance"),
            ("near;maxDistance==x", "Point", "[1,2]", "number of metres"),
            ("within", "Circle", "[1,2]", "not a geometry"),
            ("within", "Point", "nope", "JSON array"),
            (
                "near;maxDistance==5",
                "Polygon",
                "[[[0,0],[1,0],[1,1],[0,0]]]",
                "Point",
            ),
        ] {
            let e = GeoQuery::parse(rel, g, &json!(c)).unwrap_err();
            assert!(e.0.contains(want), "{rel} {g} {c}: {e}");
        }
    }
}
