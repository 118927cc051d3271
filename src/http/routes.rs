//! Route templates (`/employees/{id}`) for metrics and access logs: a raw
//! path holds ids, and labelling by it would grow one series per id.

use std::collections::HashMap;

/// One segment of a template.
#[derive(Debug)]
enum Seg {
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Param,
}

#[derive(Debug)]
struct Template {
    label: String,
    segs: Vec<Seg>,
}

impl Template {
    fn parse(template: &str) -> Self {
        let segs = template
            .split('/')
            .map(|s| {
                if s.starts_with('{') && s.ends_with('}') {
                    Seg::Param
                } else {
                    Seg::Literal(s.to_owned())
                }
            })
            .collect();
        Self {
            label: template.to_owned(),
            segs,
        }
    }

    /// Walks the path once, without allocating.
    fn matches(&self, path: &str) -> bool {
        let mut parts = path.split('/');
        for seg in &self.segs {
            match (seg, parts.next()) {
                (Seg::Literal(l), Some(p)) if l == p => {}
                (Seg::Param, Some(p)) if !p.is_empty() => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

/// The label of every path no template matches.
pub const UNMATCHED: &str = "unmatched";

/// The templates of the OpenAPI document plus the routes outside it, built
/// once at start. Most specific first, as the router decides: of
/// `/users/me` and `/users/{id}`, `/users/me` wins.
#[derive(Debug, Default)]
pub struct RouteTemplates {
    templates: Vec<Template>,
    /// Nested routes (`/docs`): the prefix itself and anything below it.
    prefixes: Vec<String>,
    /// Templates without parameters, by their text: such a template matches
    /// exactly its own path, and no template is more specific, so most
    /// requests (every `/auth/verify`) are labelled by one lookup instead
    /// of a walk over all templates.
    literal: HashMap<String, usize>,
}

impl RouteTemplates {
    /// The `paths` of an OpenAPI document (JSON); anything unreadable gives
    /// no templates, so every request is `unmatched` rather than failing.
    pub fn from_spec(spec_json: &str) -> Self {
        let mut t = Self::default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(spec_json)
            && let Some(paths) = v.get("paths").and_then(|p| p.as_object())
        {
            t.templates = paths.keys().map(|p| Template::parse(p)).collect();
        }
        t.sort();
        t
    }

    /// A route outside the document (`/metrics`).
    pub fn with_exact(mut self, template: &str) -> Self {
        self.templates.push(Template::parse(template));
        self.sort();
        self
    }

    /// A nested service (`/docs`): every path under it gets the prefix.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefixes.push(prefix.to_owned());
        self
    }

    /// Literal segments before parameters, position by position.
    fn sort(&mut self) {
        self.templates.sort_by_cached_key(|t| {
            t.segs
                .iter()
                .map(|s| matches!(s, Seg::Param))
                .collect::<Vec<_>>()
        });
        self.literal = self
            .templates
            .iter()
            .enumerate()
            .filter(|(_, t)| t.segs.iter().all(|s| matches!(s, Seg::Literal(_))))
            .map(|(i, t)| (t.label.clone(), i))
            .collect();
    }

    /// The template of `path` (without query), or `UNMATCHED`.
    pub fn label(&self, path: &str) -> &str {
        if let Some(&i) = self.literal.get(path) {
            return &self.templates[i].label;
        }
        if let Some(t) = self.templates.iter().find(|t| t.matches(path)) {
            return &t.label;
        }
        self.prefixes
            .iter()
            .find(|p| {
                path.strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .map_or(UNMATCHED, String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTemplates {
        let spec = r#"{"paths": {
            "/users/{id}": {}, "/users/me": {}, "/users/me/password": {},
            "/employees": {}, "/employees/{id}": {}, "/auth/sessions/{id}": {}
        }}"#;
        RouteTemplates::from_spec(spec)
            .with_exact("/metrics")
            .with_prefix("/docs")
    }

    #[test]
    fn paths_map_to_their_template() {
        let t = table();
        let id = "0192f1a4-7b1c-7d2e-8f3a-123456789abc";
        assert_eq!(t.label(&format!("/employees/{id}")), "/employees/{id}");
        assert_eq!(t.label("/employees"), "/employees");
        assert_eq!(
            t.label(&format!("/auth/sessions/{id}")),
            "/auth/sessions/{id}"
        );
        assert_eq!(t.label("/metrics"), "/metrics");
        assert_eq!(t.label("/docs"), "/docs");
        assert_eq!(t.label("/docs/oauth-receiver.html"), "/docs");
    }

    #[test]
    fn literal_segments_win_over_parameters() {
        let t = table();
        assert_eq!(t.label("/users/me"), "/users/me");
        assert_eq!(t.label("/users/me/password"), "/users/me/password");
        assert_eq!(t.label("/users/someone"), "/users/{id}");
    }

    #[test]
    fn everything_else_is_one_label() {
        let t = table();
        for path in [
            "/",
            "/nope",
            "/employees/",
            "/employees/x/y",
            "/docsx",
            "/metrics/x",
            "//employees",
        ] {
            assert_eq!(t.label(path), UNMATCHED, "{path}");
        }
        assert_eq!(RouteTemplates::from_spec("not json").label("/x"), UNMATCHED);
    }
}
