//! A router that knows, for every route it serves, which action and scope guard it.
//!
//! Routes are added through [`Routes`] only, so the table the gate enforces and the
//! table the coverage test enumerates are the router itself: a route cannot exist
//! without an action, and the route × role × tenant test walks every entry.

use axum::{
    Router,
    handler::Handler,
    routing::{MethodFilter, on},
};

use crate::{Action, Scope};

/// One route: method, path pattern, and what guards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The axum path pattern, e.g. `/ngsi-ld/v1/entities/{id}`.
    pub path: &'static str,
    /// The action the route performs.
    pub action: Action,
    /// What the route-level check applies to.
    pub scope: Scope,
}

/// A router under construction together with its route table.
pub struct Routes<S = ()> {
    router: Router<S>,
    table: Vec<RouteSpec>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes {
            router: Router::new(),
            table: Vec::new(),
        }
    }
}

fn filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        other => unreachable!("Routes has no constructor for method {other}"),
    }
}

macro_rules! method {
    ($name:ident, $m:literal) => {
        #[doc = concat!("Adds a ", $m, " route guarded by `action` at `scope`.")]
        pub fn $name<H, T>(
            self,
            path: &'static str,
            action: Action,
            scope: Scope,
            handler: H,
        ) -> Self
        where
            H: Handler<T, S>,
            T: 'static,
        {
            self.add($m, path, action, scope, handler)
        }
    };
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn add<H, T>(
        mut self,
        method: &'static str,
        path: &'static str,
        action: Action,
        scope: Scope,
        handler: H,
    ) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        // A (method, path) pair appears once; axum merges methods on one path.
        self.router = self.router.route(path, on(filter(method), handler));
        self.table.push(RouteSpec {
            method,
            path,
            action,
            scope,
        });
        self
    }

    method!(get, "GET");
    method!(post, "POST");
    method!(put, "PUT");
    method!(patch, "PATCH");
    method!(delete, "DELETE");

    /// Transforms the router built so far, e.g. to add a layer such as a body limit
    /// (route-table entries are unaffected).
    pub fn map_router(mut self, f: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.router = f(self.router);
        self
    }

    /// Provides the state, giving a stateless table that can be merged with others.
    pub fn with_state(self, state: S) -> Routes<()> {
        Routes {
            router: self.router.with_state(state),
            table: self.table,
        }
    }

    /// The route table.
    pub fn table(&self) -> &[RouteSpec] {
        &self.table
    }
}

impl Routes<()> {
    /// Merges another table in.
    pub fn merge(mut self, other: Routes<()>) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    /// The router and its table.
    pub fn into_parts(self) -> (Router, Vec<RouteSpec>) {
        (self.router, self.table)
    }
}
