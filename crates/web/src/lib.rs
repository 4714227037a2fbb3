//! Server-rendered pages: the national overview, with live updates over SSE.
