//! The NGSI-LD Subscription data type (ETSI GS CIM 009, 5.2.12): parsed from a request
//! body with the request's `@context`, stored with its terms expanded, and rendered back
//! compacted with the context it was created with.
//!
//! Members this node does not implement yet (`geoQ`, `scopeQ`, `temporalQ`,
//! `notificationTrigger`, `lang`, `csf`, `jsonldContext`) are refused with
//! `OperationNotSupported` rather than accepted and ignored: a subscription that
//! silently notifies more, or less, than its owner asked for is worse than none.

use polity_model::{
    EntityState, Tenant, Timestamp,
    jsonld::Context,
    ngsild::Format,
    query::{Query, QueryError},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::problem::{ErrorType, Problem};

/// Shortest `timeInterval` and `throttling` accepted, seconds.
pub const MIN_INTERVAL_SECS: f64 = 1.0;
/// Longest `idPattern` accepted, bytes.
const MAX_PATTERN: usize = 512;
/// Most entity selectors, watched attributes or notified attributes.
const MAX_LIST: usize = 100;

/// One entry of `entities`: which entities a subscription is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    /// An exact entity id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A regular expression entity ids must match (whole id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_pattern: Option<String>,
    /// The entity type, expanded.
    pub entity_type: String,
}

/// Where and how notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `http://` or `https://` URL.
    pub uri: String,
    /// `application/json` (context in a Link header) or `application/ld+json`.
    pub accept: String,
    /// Extra headers sent with every notification (`receiverInfo`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receiver_info: Vec<(String, String)>,
}

/// The `notification` member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationParams {
    /// Only these attributes (expanded); empty for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    /// `normalized`, `keyValues` or `concise`.
    pub format: String,
    /// Add `createdAt`/`modifiedAt` to notified entities.
    #[serde(default)]
    pub sys_attrs: bool,
    /// The endpoint.
    pub endpoint: Endpoint,
}

impl NotificationParams {
    /// The rendering format.
    pub fn render_format(&self) -> Format {
        match self.format.as_str() {
            "keyValues" => Format::KeyValues,
            "concise" => Format::Concise,
            _ => Format::Normalized,
        }
    }
}

/// What happened to a subscription's notifications so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Notifications delivered.
    #[serde(default)]
    pub times_sent: u64,
    /// Notifications that failed after every retry.
    #[serde(default)]
    pub times_failed: u64,
    /// The last attempt, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_notification: Option<Timestamp>,
    /// The last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Timestamp>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Timestamp>,
    /// Why the last failure failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_reason: Option<String>,
}

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Its id (a URI).
    pub id: String,
    /// The tenant it belongs to; it never sees another.
    pub tenant: Tenant,
    /// The principal that created it (text form); notifications are reads by them.
    pub owner: String,
    /// `subscriptionName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `entities`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<Selector>,
    /// `watchedAttributes`, expanded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watched: Vec<String>,
    /// `q` as written (for rendering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// `q` with its attribute names expanded (for evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q_expanded: Option<String>,
    /// `notification`.
    pub notification: NotificationParams,
    /// `timeInterval`, seconds: notify every interval instead of on change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_interval: Option<f64>,
    /// `throttling`, seconds: at most one notification per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttling: Option<f64>,
    /// `expiresAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// `isActive`.
    pub is_active: bool,
    /// The `@context` it was created with (a URL or an inline context).
    pub context: Value,
    /// `createdAt`.
    pub created_at: Timestamp,
    /// `modifiedAt`.
    pub modified_at: Timestamp,
    /// Delivery status.
    #[serde(default)]
    pub delivery: Delivery,
}

impl Subscription {
    /// `active`, `paused` or `expired`.
    pub fn status(&self, now: Timestamp) -> &'static str {
        if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else if !self.is_active {
            "paused"
        } else {
            "active"
        }
    }

    /// The NGSI-LD representation, compacted with `ctx`.
    pub fn render(&self, ctx: &Context, sys_attrs: bool, now: Timestamp) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("type".into(), json!("Subscription"));
        if let Some(n) = &self.name {
            m.insert("subscriptionName".into(), json!(n));
        }
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        if !self.entities.is_empty() {
            let e: Vec<Value> = self
                .entities
                .iter()
                .map(|s| {
                    let mut o = Map::new();
                    if let Some(id) = &s.id {
                        o.insert("id".into(), json!(id));
                    }
                    if let Some(p) = &s.id_pattern {
                        o.insert("idPattern".into(), json!(p));
                    }
                    o.insert("type".into(), json!(ctx.compact_iri(&s.entity_type)));
                    Value::Object(o)
                })
                .collect();
            m.insert("entities".into(), Value::Array(e));
        }
        if !self.watched.is_empty() {
            m.insert(
                "watchedAttributes".into(),
                json!(
                    self.watched
                        .iter()
                        .map(|a| ctx.compact_iri(a).into_owned())
                        .collect::<Vec<_>>()
                ),
            );
        }
        if let Some(q) = &self.q {
            m.insert("q".into(), json!(q));
        }
        if let Some(t) = self.time_interval {
            m.insert("timeInterval".into(), json!(t));
        }
        if let Some(t) = self.throttling {
            m.insert("throttling".into(), json!(t));
        }
        if let Some(e) = self.expires_at {
            m.insert("expiresAt".into(), json!(e.to_string()));
        }
        m.insert("isActive".into(), json!(self.is_active));
        m.insert("status".into(), json!(self.status(now)));
        let n = &self.notification;
        let mut nm = Map::new();
        if !n.attributes.is_empty() {
            nm.insert(
                "attributes".into(),
                json!(
                    n.attributes
                        .iter()
                        .map(|a| ctx.compact_iri(a).into_owned())
                        .collect::<Vec<_>>()
                ),
            );
        }
        nm.insert("format".into(), json!(n.format));
        if n.sys_attrs {
            nm.insert("sysAttrs".into(), json!(true));
        }
        let mut em = Map::new();
        em.insert("uri".into(), json!(n.endpoint.uri));
        em.insert("accept".into(), json!(n.endpoint.accept));
        if !n.endpoint.receiver_info.is_empty() {
            em.insert(
                "receiverInfo".into(),
                Value::Array(
                    n.endpoint
                        .receiver_info
                        .iter()
                        .map(|(k, v)| json!({"key": k, "value": v}))
                        .collect(),
                ),
            );
        }
        nm.insert("endpoint".into(), Value::Object(em));
        let d = &self.delivery;
        nm.insert("timesSent".into(), json!(d.times_sent));
        nm.insert("timesFailed".into(), json!(d.times_failed));
        let ok = match (d.last_success, d.last_failure) {
            (_, None) => true,
            (Some(s), Some(f)) => s > f,
            (None, Some(_)) => false,
        };
        nm.insert("status".into(), json!(if ok { "ok" } else { "failed" }));
        for (k, t) in [
            ("lastNotification", d.last_notification),
            ("lastSuccess", d.last_success),
            ("lastFailure", d.last_failure),
        ] {
            if let Some(t) = t {
                nm.insert(k.into(), json!(t.to_string()));
            }
        }
        m.insert("notification".into(), Value::Object(nm));
        if sys_attrs {
            m.insert("createdAt".into(), json!(self.created_at.to_string()));
            m.insert("modifiedAt".into(), json!(self.modified_at.to_string()));
        }
        Value::Object(m)
    }

    /// Whether an entity with this id and (expanded) type is one the subscription is
    /// about.
    pub fn selects(&self, id: &str, entity_type: &str) -> bool {
        self.entities.is_empty()
            || self.entities.iter().any(|s| {
                s.entity_type == entity_type
                    && s.id.as_deref().is_none_or(|i| i == id)
                    && s.id_pattern
                        .as_deref()
                        .is_none_or(|p| compile_pattern(p).is_ok_and(|r| r.is_match(id)))
            })
    }

    /// Whether a change to `changed` (expanded attribute names) is one it watches.
    pub fn watches<'a>(&self, mut changed: impl Iterator<Item = &'a str>) -> bool {
        self.watched.is_empty() || changed.any(|a| self.watched.iter().any(|w| w == a))
    }

    /// Whether the entity's current state passes `q`.
    pub fn passes_q(&self, state: &EntityState) -> bool {
        match &self.q_expanded {
            None => true,
            Some(q) => Query::parse(q).is_ok_and(|q| q.matches(state)),
        }
    }
}

/// Compiles an `idPattern` (anchored to the whole id), with a size limit.
pub fn compile_pattern(p: &str) -> Result<regex::Regex, String> {
    if p.len() > MAX_PATTERN {
        return Err(format!("idPattern is longer than {MAX_PATTERN} bytes"));
    }
    // The regex crate reads `a**` as a repetition of a repetition; in an id pattern it
    // is a typo (the ETSI suite's "invalid pattern" is exactly that), so refuse it.
    let b = p.as_bytes();
    if let Some(i) = (1..b.len()).find(|&i| {
        matches!(b[i], b'*' | b'+')
            && matches!(b[i - 1], b'*' | b'+')
            && (i < 2 || b[i - 2] != b'\\')
    }) {
        return Err(format!(
            "idPattern `{p}` repeats a repetition at byte {i} (`{}{}`); write one quantifier",
            b[i - 1] as char,
            b[i] as char
        ));
    }
    regex::RegexBuilder::new(&format!("^(?:{p})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("idPattern `{p}` is not a valid regular expression: {e}"))
}

/// What a subscription body may set; used both for creation (all required parts) and
/// for PATCH (any subset).
pub struct Parsed {
    /// Members present in the body, applied in order to a new or existing subscription.
    fields: Vec<Field>,
    /// The `id` member, if any.
    pub id: Option<String>,
}

enum Field {
    Name(Option<String>),
    Description(Option<String>),
    Entities(Vec<Selector>),
    Watched(Vec<String>),
    Q(Option<(String, String)>),
    Notification(NotificationParams),
    TimeInterval(Option<f64>),
    Throttling(Option<f64>),
    ExpiresAt(Option<Timestamp>),
    IsActive(bool),
}

fn bad(msg: impl Into<String>) -> Problem {
    Problem::bad_data(msg.into())
}

fn unsupported(member: &str) -> Problem {
    Problem::new(
        ErrorType::OperationNotSupported,
        format!(
            "`{member}` in subscriptions is not supported by this node yet; leave it out (see docs/SUBSCRIPTIONS.md)"
        ),
    )
}

fn string(v: &Value, member: &str) -> Result<String, Problem> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| bad(format!("`{member}` must be a string")))
}

fn positive(v: &Value, member: &str) -> Result<f64, Problem> {
    match v.as_f64() {
        Some(n) if n.is_finite() && n >= MIN_INTERVAL_SECS => Ok(n),
        _ => Err(bad(format!(
            "`{member}` must be a number of seconds, at least {MIN_INTERVAL_SECS}"
        ))),
    }
}

fn string_list(v: &Value, member: &str, ctx: &Context) -> Result<Vec<String>, Problem> {
    let items = v
        .as_array()
        .filter(|a| !a.is_empty() && a.len() <= MAX_LIST)
        .ok_or_else(|| {
            bad(format!(
                "`{member}` must be a non-empty array of at most {MAX_LIST} attribute names"
            ))
        })?;
    items
        .iter()
        .map(|i| {
            let s = i
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad(format!("`{member}` must hold attribute names (strings)")))?;
            Ok(ctx.expand_term(s).into_owned())
        })
        .collect()
}

fn is_uri(s: &str) -> bool {
    s.split_once(':')
        .is_some_and(|(scheme, rest)| !scheme.is_empty() && !rest.is_empty())
        && !s.chars().any(char::is_whitespace)
}

/// Parses a subscription body (or a PATCH fragment when `patch`).
pub fn parse(body: &Value, ctx: &Context, patch: bool) -> Result<Parsed, Problem> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad("a subscription must be a JSON object"))?;
    let mut fields = Vec::new();
    let mut id = None;
    for (k, v) in obj {
        match k.as_str() {
            "@context" => {}
            "id" => {
                let s = string(v, "id")?;
                if !is_uri(&s) {
                    return Err(bad(format!("subscription id `{s}` is not a URI")));
                }
                id = Some(s);
            }
            "type" => {
                if v.as_str() != Some("Subscription") {
                    return Err(bad("`type` of a subscription must be \"Subscription\""));
                }
            }
            "subscriptionName" => fields.push(Field::Name(Some(string(v, k)?))),
            "description" => fields.push(Field::Description(Some(string(v, k)?))),
            "entities" => fields.push(Field::Entities(selectors(v, ctx)?)),
            "watchedAttributes" => fields.push(Field::Watched(string_list(v, k, ctx)?)),
            "q" => {
                let src = string(v, "q")?;
                let mut q = Query::parse(&src).map_err(q_problem)?;
                q.map_names(|n| ctx.expand_term(n).into_owned());
                fields.push(Field::Q(Some((src, q.to_string()))));
            }
            "notification" => fields.push(Field::Notification(notification(v, ctx)?)),
            "timeInterval" => fields.push(Field::TimeInterval(Some(positive(v, k)?))),
            "throttling" => fields.push(Field::Throttling(Some(positive(v, k)?))),
            "expiresAt" => {
                let s = string(v, k)?;
                let t = Timestamp::parse(&s).map_err(|e| {
                    bad(format!(
                        "`expiresAt` `{s}` is not an ISO 8601 date-time: {e}"
                    ))
                })?;
                if t <= Timestamp::now() {
                    return Err(bad(format!("`expiresAt` {s} is in the past")));
                }
                fields.push(Field::ExpiresAt(Some(t)));
            }
            "isActive" => fields.push(Field::IsActive(
                v.as_bool()
                    .ok_or_else(|| bad("`isActive` must be true or false"))?,
            )),
            "geoQ"
            | "scopeQ"
            | "temporalQ"
            | "notificationTrigger"
            | "lang"
            | "csf"
            | "jsonldContext"
            | "datasetId"
            | "expandValues" => return Err(unsupported(k)),
            "status" | "createdAt" | "modifiedAt" => {
                return Err(bad(format!(
                    "`{k}` is set by the node and cannot be written"
                )));
            }
            other => {
                return Err(bad(format!("`{other}` is not a member of a subscription")));
            }
        }
    }
    if patch && id.is_some() {
        return Err(bad("the id of a subscription cannot be changed"));
    }
    Ok(Parsed { fields, id })
}

fn q_problem(e: QueryError) -> Problem {
    bad(format!("{e}"))
}

fn selectors(v: &Value, ctx: &Context) -> Result<Vec<Selector>, Problem> {
    let items = v
        .as_array()
        .filter(|a| !a.is_empty() && a.len() <= MAX_LIST)
        .ok_or_else(|| {
            bad(format!(
                "`entities` must be a non-empty array of at most {MAX_LIST} {{\"type\": …}} objects"
            ))
        })?;
    items
        .iter()
        .map(|i| {
            let o = i
                .as_object()
                .ok_or_else(|| bad("each of `entities` must be an object with a `type`"))?;
            let mut sel = Selector {
                id: None,
                id_pattern: None,
                entity_type: String::new(),
            };
            for (k, v) in o {
                match k.as_str() {
                    "type" => {
                        sel.entity_type =
                            ctx.expand_term(&string(v, "entities[].type")?).into_owned()
                    }
                    "id" => {
                        let s = string(v, "entities[].id")?;
                        if !is_uri(&s) {
                            return Err(bad(format!("entities[].id `{s}` is not a URI")));
                        }
                        sel.id = Some(s);
                    }
                    "idPattern" => {
                        let s = string(v, "entities[].idPattern")?;
                        compile_pattern(&s).map_err(bad)?;
                        sel.id_pattern = Some(s);
                    }
                    other => {
                        return Err(bad(format!(
                            "`{other}` is not a member of an entity selector (id, idPattern, type)"
                        )));
                    }
                }
            }
            if sel.entity_type.is_empty() {
                return Err(bad("each of `entities` needs a `type`"));
            }
            Ok(sel)
        })
        .collect()
}

fn notification(v: &Value, ctx: &Context) -> Result<NotificationParams, Problem> {
    let o = v
        .as_object()
        .ok_or_else(|| bad("`notification` must be an object with an `endpoint`"))?;
    let mut n = NotificationParams {
        attributes: Vec::new(),
        format: "normalized".into(),
        sys_attrs: false,
        endpoint: Endpoint {
            uri: String::new(),
            accept: "application/json".into(),
            receiver_info: Vec::new(),
        },
    };
    let mut has_endpoint = false;
    for (k, v) in o {
        match k.as_str() {
            "attributes" => n.attributes = string_list(v, "notification.attributes", ctx)?,
            "format" => {
                let f = string(v, "notification.format")?;
                if !matches!(f.as_str(), "normalized" | "keyValues" | "concise") {
                    return Err(bad(format!(
                        "notification.format `{f}` is not one of normalized, keyValues, concise"
                    )));
                }
                n.format = f;
            }
            "sysAttrs" => {
                n.sys_attrs = v
                    .as_bool()
                    .ok_or_else(|| bad("`notification.sysAttrs` must be true or false"))?;
            }
            "endpoint" => {
                n.endpoint = endpoint(v)?;
                has_endpoint = true;
            }
            // Read-only status members, echoed back by clients that GET then PUT.
            "status" | "timesSent" | "timesFailed" | "lastNotification" | "lastSuccess"
            | "lastFailure" => {}
            "showChanges" | "join" | "joinLevel" | "onlyChangedAttrs" => {
                return Err(unsupported(&format!("notification.{k}")));
            }
            other => {
                return Err(bad(format!(
                    "`{other}` is not a member of notification (attributes, format, sysAttrs, endpoint)"
                )));
            }
        }
    }
    if !has_endpoint {
        return Err(bad("`notification` needs an `endpoint` with a `uri`"));
    }
    Ok(n)
}

fn endpoint(v: &Value) -> Result<Endpoint, Problem> {
    let o = v
        .as_object()
        .ok_or_else(|| bad("`notification.endpoint` must be an object with a `uri`"))?;
    let mut e = Endpoint {
        uri: String::new(),
        accept: "application/json".into(),
        receiver_info: Vec::new(),
    };
    for (k, v) in o {
        match k.as_str() {
            "uri" => {
                let u = string(v, "endpoint.uri")?;
                let scheme = u.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
                match scheme.as_deref() {
                    Some("http" | "https") => {}
                    Some("mqtt" | "mqtts") => {
                        return Err(unsupported("MQTT notification endpoints"));
                    }
                    _ => {
                        return Err(bad(format!(
                            "endpoint.uri `{u}` must be an http:// or https:// URL"
                        )));
                    }
                }
                if u.parse::<axum::http::Uri>().is_err() {
                    return Err(bad(format!("endpoint.uri `{u}` is not a valid URL")));
                }
                e.uri = u;
            }
            "accept" => {
                let a = string(v, "endpoint.accept")?;
                if !matches!(a.as_str(), "application/json" | "application/ld+json") {
                    return Err(bad(format!(
                        "endpoint.accept `{a}` must be application/json or application/ld+json"
                    )));
                }
                e.accept = a;
            }
            "receiverInfo" => {
                let items = v
                    .as_array()
                    .ok_or_else(|| bad("`receiverInfo` must be an array of {key, value}"))?;
                for i in items {
                    let (Some(k), Some(val)) = (
                        i.get("key").and_then(Value::as_str),
                        i.get("value").and_then(Value::as_str),
                    ) else {
                        return Err(bad(
                            "each of `receiverInfo` must be {\"key\": …, \"value\": …}",
                        ));
                    };
                    let name = axum::http::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| bad(format!("receiverInfo key `{k}` is not a header name")))?;
                    if matches!(
                        name.as_str(),
                        "host"
                            | "content-type"
                            | "content-length"
                            | "link"
                            | "ngsild-tenant"
                            | "transfer-encoding"
                            | "connection"
                    ) {
                        return Err(bad(format!(
                            "receiverInfo cannot set `{k}`: the node sets it"
                        )));
                    }
                    axum::http::HeaderValue::from_str(val).map_err(|_| {
                        bad(format!("receiverInfo value of `{k}` is not a header value"))
                    })?;
                    e.receiver_info.push((k.to_owned(), val.to_owned()));
                }
            }
            "notifierInfo" => return Err(unsupported("endpoint.notifierInfo")),
            other => {
                return Err(bad(format!(
                    "`{other}` is not a member of endpoint (uri, accept, receiverInfo)"
                )));
            }
        }
    }
    if e.uri.is_empty() {
        return Err(bad("`notification.endpoint` needs a `uri`"));
    }
    Ok(e)
}

impl Parsed {
    /// A new subscription from a creation body.
    pub fn create(
        self,
        id: String,
        tenant: Tenant,
        owner: String,
        context: Value,
    ) -> Result<Subscription, Problem> {
        let now = Timestamp::now();
        let mut s = Subscription {
            id,
            tenant,
            owner,
            name: None,
            description: None,
            entities: Vec::new(),
            watched: Vec::new(),
            q: None,
            q_expanded: None,
            notification: NotificationParams {
                attributes: Vec::new(),
                format: String::new(),
                sys_attrs: false,
                endpoint: Endpoint {
                    uri: String::new(),
                    accept: String::new(),
                    receiver_info: Vec::new(),
                },
            },
            time_interval: None,
            throttling: None,
            expires_at: None,
            is_active: true,
            context,
            created_at: now,
            modified_at: now,
            delivery: Delivery::default(),
        };
        if !self
            .fields
            .iter()
            .any(|f| matches!(f, Field::Notification(_)))
        {
            return Err(bad(
                "a subscription needs `notification` with an `endpoint`",
            ));
        }
        self.apply_to(&mut s)?;
        Ok(s)
    }

    /// Applies the members present to `s` (PATCH), then checks the result.
    pub fn apply_to(self, s: &mut Subscription) -> Result<(), Problem> {
        for f in self.fields {
            match f {
                Field::Name(v) => s.name = v,
                Field::Description(v) => s.description = v,
                Field::Entities(v) => s.entities = v,
                Field::Watched(v) => s.watched = v,
                Field::Q(v) => {
                    (s.q, s.q_expanded) = match v {
                        Some((a, b)) => (Some(a), Some(b)),
                        None => (None, None),
                    }
                }
                Field::Notification(n) => s.notification = n,
                Field::TimeInterval(v) => s.time_interval = v,
                Field::Throttling(v) => s.throttling = v,
                Field::ExpiresAt(v) => s.expires_at = v,
                Field::IsActive(v) => s.is_active = v,
            }
        }
        s.modified_at = Timestamp::now();
        check(s)
    }
}

/// The rules between members (CIM 009 5.2.12).
fn check(s: &Subscription) -> Result<(), Problem> {
    if s.entities.is_empty() && s.watched.is_empty() && s.time_interval.is_none() {
        return Err(bad(
            "a subscription needs `entities` or `watchedAttributes` (or both)",
        ));
    }
    if s.time_interval.is_some() && !s.watched.is_empty() {
        return Err(bad(
            "`timeInterval` and `watchedAttributes` exclude each other: notify periodically or on change",
        ));
    }
    if s.time_interval.is_some() && s.throttling.is_some() {
        return Err(bad("`timeInterval` and `throttling` exclude each other"));
    }
    if s.time_interval.is_some() && s.entities.is_empty() {
        return Err(bad(
            "a periodic subscription (`timeInterval`) needs `entities`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context::core().clone()
    }

    fn sub(body: Value) -> Result<Subscription, Problem> {
        parse(&body, &ctx(), false)?.create(
            "urn:ngsi-ld:Subscription:t".into(),
            Tenant::new("adelaide").unwrap(),
            "operator".into(),
            json!(polity_model::jsonld::CORE_CONTEXT_URL),
        )
    }

    fn endpoint() -> Value {
        json!({"endpoint": {"uri": "http://127.0.0.1:9/n"}})
    }

    #[test]
    fn a_minimal_subscription_parses_and_renders_back() {
        let s = sub(
            json!({"type": "Subscription", "entities": [{"type": "Vehicle"}],
            "watchedAttributes": ["speed"], "q": "speed>50", "notification": endpoint()}),
        )
        .unwrap();
        assert_eq!(s.entities[0].entity_type, ctx().expand_term("Vehicle"));
        assert!(s.watched[0].ends_with("speed"), "{:?}", s.watched);
        assert!(
            s.q_expanded.as_deref().unwrap().contains("/speed"),
            "{:?}",
            s.q_expanded
        );
        let r = s.render(&ctx(), false, Timestamp::now());
        assert_eq!(r["entities"][0]["type"], "Vehicle");
        assert_eq!(r["watchedAttributes"][0], "speed");
        assert_eq!(r["q"], "speed>50");
        assert_eq!(r["status"], "active");
        assert_eq!(r["notification"]["status"], "ok");
        assert_eq!(r["notification"]["endpoint"]["accept"], "application/json");
    }

    #[test]
    fn rules_between_members_are_enforced() {
        for (body, needle) in [
            (
                json!({"type": "Subscription", "notification": endpoint()}),
                "entities",
            ),
            (
                json!({"type": "Subscription", "entities": [{"type": "V"}]}),
                "notification",
            ),
            (
                json!({"type": "Subscription", "entities": [{"type": "V"}], "watchedAttributes": ["a"], "timeInterval": 10, "notification": endpoint()}),
                "exclude",
            ),
            (
                json!({"type": "Subscription", "entities": [{"id": "urn:x:1"}], "notification": endpoint()}),
                "type",
            ),
            (
                json!({"type": "Subscription", "entities": [{"type": "V", "idPattern": "("}], "notification": endpoint()}),
                "regular expression",
            ),
            (
                json!({"type": "Subscription", "entities": [{"type": "V"}], "q": "a==", "notification": endpoint()}),
                "q",
            ),
            (
                json!({"type": "Subscription", "entities": [{"type": "V"}], "expiresAt": "2000-01-01T00:00:00Z", "notification": endpoint()}),
                "past",
            ),
            (
                json!({"type": "Subscription", "entities": [{"type": "V"}], "throttling": 0, "notification": endpoint()}),
                "throttling",
            ),
            (
                json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": {"endpoint": {"uri": "ftp://x/y"}}}),
                "http",
            ),
            (
                json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": {"endpoint": {"uri": "http://x/y", "receiverInfo": [{"key": "Host", "value": "evil"}]}}}),
                "Host",
            ),
            (
                json!({"type": "Subscription", "entities": [{"type": "V"}], "colour": 1, "notification": endpoint()}),
                "colour",
            ),
            (
                json!({"type": "Notification", "entities": [{"type": "V"}], "notification": endpoint()}),
                "Subscription",
            ),
        ] {
            let e = sub(body.clone()).expect_err(&body.to_string());
            assert!(e.detail.contains(needle), "{body}: {}", e.detail);
            assert_eq!(e.error_type(), Some(ErrorType::BadRequestData), "{body}");
        }
    }

    #[test]
    fn unsupported_members_are_refused_not_ignored() {
        for m in ["geoQ", "scopeQ", "lang", "notificationTrigger"] {
            let mut body = json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": endpoint()});
            body[m] = json!("x");
            let e = sub(body).unwrap_err();
            assert_eq!(
                e.error_type(),
                Some(ErrorType::OperationNotSupported),
                "{m}"
            );
            assert!(e.detail.contains(m));
        }
        let e = sub(json!({"type": "Subscription", "entities": [{"type": "V"}],
            "notification": {"endpoint": {"uri": "mqtt://broker:1883/topic"}}}))
        .unwrap_err();
        assert_eq!(e.error_type(), Some(ErrorType::OperationNotSupported));
    }

    #[test]
    fn selection_by_id_pattern_type_and_watched_attributes() {
        let s = sub(json!({"type": "Subscription",
            "entities": [{"type": "Vehicle", "idPattern": "urn:ngsi-ld:Vehicle:bus-.*"},
                         {"type": "Vehicle", "id": "urn:ngsi-ld:Vehicle:car-1"}],
            "watchedAttributes": ["speed"], "notification": endpoint()}))
        .unwrap();
        let v = ctx().expand_term("Vehicle").into_owned();
        assert!(s.selects("urn:ngsi-ld:Vehicle:bus-7", &v));
        assert!(s.selects("urn:ngsi-ld:Vehicle:car-1", &v));
        assert!(!s.selects("urn:ngsi-ld:Vehicle:car-2", &v));
        // The pattern is anchored: a prefix elsewhere does not match.
        assert!(!s.selects("x-urn:ngsi-ld:Vehicle:bus-7", &v));
        assert!(!s.selects("urn:ngsi-ld:Vehicle:bus-7", "https://example.org/Boat"));
        let speed = ctx().expand_term("speed").into_owned();
        let other = ctx().expand_term("colour").into_owned();
        assert!(s.watches([speed.as_str()].into_iter()));
        assert!(!s.watches([other.as_str()].into_iter()));
    }

    #[test]
    fn patch_changes_only_what_it_names_and_rechecks() {
        let mut s = sub(json!({"type": "Subscription", "entities": [{"type": "V"}],
            "subscriptionName": "a", "notification": endpoint()}))
        .unwrap();
        parse(&json!({"isActive": false}), &ctx(), true)
            .unwrap()
            .apply_to(&mut s)
            .unwrap();
        assert!(!s.is_active);
        assert_eq!(s.name.as_deref(), Some("a"));
        assert_eq!(s.status(Timestamp::now()), "paused");
        let e = parse(
            &json!({"timeInterval": 5, "watchedAttributes": ["x"]}),
            &ctx(),
            true,
        )
        .unwrap()
        .apply_to(&mut s.clone())
        .unwrap_err();
        assert!(e.detail.contains("exclude"));
        assert!(parse(&json!({"id": "urn:x:2"}), &ctx(), true).is_err());
    }

    #[test]
    fn stored_form_round_trips() {
        let s = sub(json!({"type": "Subscription", "entities": [{"type": "V"}], "q": "a==1|b>2",
            "notification": {"endpoint": {"uri": "https://example.org/n", "accept": "application/ld+json",
            "receiverInfo": [{"key": "X-Key", "value": "v"}]}, "format": "keyValues", "attributes": ["a"]}}))
        .unwrap();
        let bytes = serde_json::to_vec(&s).unwrap();
        let back: Subscription = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
    }
}
