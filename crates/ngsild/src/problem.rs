//! NGSI-LD errors as ProblemDetails (RFC 7807) bodies with the spec's error types.
//!
//! Every error a client can cause leaves this crate as one of these, with the HTTP
//! status the NGSI-LD specification assigns to its type, a short title and a detail that
//! says what to change.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// The error types of ETSI GS CIM 009, clause 5.5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The request is syntactically wrong (e.g. not JSON).
    InvalidRequest,
    /// The request is well-formed but its content is not acceptable.
    BadRequestData,
    /// The entity, attribute or resource does not exist.
    ResourceNotFound,
    /// The entity already exists.
    AlreadyExists,
    /// The operation is not supported by this node.
    OperationNotSupported,
    /// The query is too complex to answer.
    TooComplexQuery,
    /// The query would return too many results.
    TooManyResults,
    /// An internal error; the client is not at fault.
    InternalError,
    /// A referenced `@context` is neither built in nor registered.
    LdContextNotAvailable,
    /// The `NGSILD-Tenant` does not exist.
    NonexistentTenant,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The media type of the body is not accepted.
    UnsupportedMediaType,
    /// The requested media type cannot be produced.
    NotAcceptable,
    /// The node is overloaded or shutting down.
    ServiceUnavailable,
    /// The caller's principal may not perform the operation (authorization).
    Forbidden,
}

impl ErrorType {
    /// The ProblemDetails `type` URI.
    pub fn uri(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
            ErrorType::BadRequestData => "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            ErrorType::ResourceNotFound => "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
            ErrorType::AlreadyExists => "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists",
            ErrorType::OperationNotSupported => {
                "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported"
            }
            ErrorType::TooComplexQuery => "https://uri.etsi.org/ngsi-ld/errors/TooComplexQuery",
            ErrorType::TooManyResults => "https://uri.etsi.org/ngsi-ld/errors/TooManyResults",
            ErrorType::InternalError => "https://uri.etsi.org/ngsi-ld/errors/InternalError",
            ErrorType::LdContextNotAvailable => {
                "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable"
            }
            ErrorType::NonexistentTenant => "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant",
            // Not NGSI-LD types: plain HTTP problems (RFC 7807 allows about:blank).
            ErrorType::PayloadTooLarge
            | ErrorType::UnsupportedMediaType
            | ErrorType::NotAcceptable
            | ErrorType::ServiceUnavailable => "about:blank",
            ErrorType::Forbidden => "urn:polity:problem:forbidden",
        }
    }

    /// The HTTP status the specification gives this type.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::InvalidRequest | ErrorType::BadRequestData => StatusCode::BAD_REQUEST,
            ErrorType::ResourceNotFound | ErrorType::NonexistentTenant => StatusCode::NOT_FOUND,
            ErrorType::AlreadyExists => StatusCode::CONFLICT,
            ErrorType::OperationNotSupported => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::TooComplexQuery | ErrorType::TooManyResults => StatusCode::FORBIDDEN,
            ErrorType::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::LdContextNotAvailable | ErrorType::ServiceUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorType::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorType::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ErrorType::Forbidden => StatusCode::FORBIDDEN,
        }
    }

    fn title(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "Invalid request",
            ErrorType::BadRequestData => "Bad request data",
            ErrorType::ResourceNotFound => "Resource not found",
            ErrorType::AlreadyExists => "Already exists",
            ErrorType::OperationNotSupported => "Operation not supported",
            ErrorType::TooComplexQuery => "Too complex query",
            ErrorType::TooManyResults => "Too many results",
            ErrorType::InternalError => "Internal error",
            ErrorType::LdContextNotAvailable => "@context not available",
            ErrorType::NonexistentTenant => "Nonexistent tenant",
            ErrorType::PayloadTooLarge => "Payload too large",
            ErrorType::UnsupportedMediaType => "Unsupported media type",
            ErrorType::NotAcceptable => "Not acceptable",
            ErrorType::ServiceUnavailable => "Service unavailable",
            ErrorType::Forbidden => "Forbidden",
        }
    }
}

/// A ProblemDetails body.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    /// The error type URI.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A short summary.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong and what to do.
    pub detail: String,
    #[serde(skip)]
    error_type: Option<ErrorType>,
}

impl Problem {
    /// A problem of type `t` with a detail message for the user.
    pub fn new(t: ErrorType, detail: impl Into<String>) -> Self {
        Problem {
            kind: t.uri(),
            title: t.title(),
            status: t.status().as_u16(),
            detail: detail.into(),
            error_type: Some(t),
        }
    }

    /// 400 InvalidRequest.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Problem::new(ErrorType::InvalidRequest, detail)
    }

    /// 400 BadRequestData.
    pub fn bad_data(detail: impl Into<String>) -> Self {
        Problem::new(ErrorType::BadRequestData, detail)
    }

    /// 403: the caller's principal may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(ErrorType::Forbidden, detail)
    }

    /// 503: the audit log could not record an access, so the data is withheld.
    pub fn audit_unavailable() -> Self {
        Problem::new(
            ErrorType::ServiceUnavailable,
            "the audit log could not record this access to personal data, so it is withheld; retry later",
        )
    }

    /// 404 ResourceNotFound.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(ErrorType::ResourceNotFound, detail)
    }

    /// 500 InternalError; the detail is logged, the client gets a generic message.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error serving a request");
        Problem::new(
            ErrorType::InternalError,
            format!("the node hit an internal error: {err}"),
        )
    }

    /// The error type, when it is one of ours.
    pub fn error_type(&self) -> Option<ErrorType> {
        self.error_type
    }

    /// The body as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_spec_fields() {
        let p = Problem::bad_data("attribute `speed` has no value; add \"value\"");
        let j = p.to_json();
        assert_eq!(
            j["type"],
            "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
        );
        assert_eq!(j["status"], 400);
        assert!(j["detail"].as_str().unwrap().contains("speed"));
        assert_eq!(Problem::new(ErrorType::AlreadyExists, "x").status, 409);
    }
}
