//! The endpoint form, for adding an endpoint on the portal's first page and editing one on
//! its own page: the URL, a description, the event types it wants (picked from the catalog,
//! plus any pattern typed in), a rate limit and, when adding, the signing scheme. The API checks
//! what is sent; the script shows each error next to the field it names.

use std::fmt::Write;

use super::page::esc;
use crate::event::catalog::Catalog;
use crate::registry::EndpointRecord;

/// The form's fields, filled from `current` when editing. `prefix` keeps the ids of two forms
/// apart (`add`, `edit`); the script finds a field's error element as `{prefix}-{field}-error`.
pub(super) fn endpoint_form(
    catalog: &Catalog,
    prefix: &str,
    current: Option<&EndpointRecord>,
) -> String {
    let (heading, submit) = match current {
        None => ("Add an endpoint", "Add endpoint"),
        Some(_) => ("Edit this endpoint", "Save changes"),
    };
    let url = current.map_or("", |r| r.url.as_str());
    let description = current.map_or("", |r| r.description.as_str());
    let rate = current
        .and_then(|r| r.rate_limit)
        .map(|r| r.to_string())
        .unwrap_or_default();
    let chosen: &[String] = current.map_or(&[], |r| r.filters.as_slice());
    // Offered when adding only: an endpoint keeps the scheme it was created with.
    let signing = if current.is_none() {
        signing_choice(prefix)
    } else {
        String::new()
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "<section aria-labelledby=\"{p}-h\"><h2 id=\"{p}-h\">{heading}</h2>\
         <form id=\"{p}-endpoint\" class=\"endpoint-form\" data-prefix=\"{p}\" novalidate>\
         {field_url}{field_description}\
         <fieldset aria-describedby=\"{p}-filters-error\"><legend>Events to receive</legend>",
        p = prefix,
        field_url = text_field(
            prefix,
            "url",
            "URL",
            "url",
            url,
            "https://example.com/webhooks"
        ),
        field_description = text_field(
            prefix,
            "description",
            "Description (optional)",
            "text",
            description,
            ""
        ),
    );
    let listed = std::iter::once("*").chain(catalog.types().iter().map(|t| t.event_type.as_str()));
    for ty in listed {
        let checked = if chosen.iter().any(|f| f == ty) {
            " checked"
        } else {
            ""
        };
        let label = if ty == "*" {
            "every event (but webhookd.*)"
        } else {
            ty
        };
        let title = catalog
            .types()
            .iter()
            .find(|t| t.event_type == ty)
            .map(|t| format!(" title=\"{}\"", esc(&t.description)))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<label{title}><input type=\"checkbox\" name=\"filters\" value=\"{v}\"{checked}> {l}</label>",
            v = esc(ty),
            l = esc(label)
        );
    }
    // Patterns that are not one catalog type (`outbound.*`) are kept as typed.
    let patterns: Vec<&str> = chosen
        .iter()
        .map(String::as_str)
        .filter(|f| *f != "*" && !catalog.contains(f))
        .collect();
    let _ = write!(
        s,
        "<span class=\"wide\"><label for=\"{p}-patterns\">More patterns, comma-separated \
         (<code>outbound.*</code> is every outbound type)</label><br>\
         <input id=\"{p}-patterns\" name=\"patterns\" type=\"text\" size=\"40\" value=\"{v}\" \
         aria-describedby=\"{p}-filters-error\"></span>\
         <span id=\"{p}-filters-error\" class=\"field-error\" role=\"alert\"></span></fieldset>\
         <p><label for=\"{p}-rate_limit\">Rate limit, deliveries per second (optional)</label><br>\
         <input id=\"{p}-rate_limit\" name=\"rate_limit\" type=\"number\" min=\"1\" max=\"1000000\" \
         inputmode=\"numeric\" value=\"{rate}\" aria-describedby=\"{p}-rate_limit-error\">\
         <span id=\"{p}-rate_limit-error\" class=\"field-error\" role=\"alert\"></span></p>\
         <p><label for=\"{p}-ordering_key\">Ordering key (optional): deliveries with the same \
         value at this path of the body arrive one at a time, in order</label><br>\
         <input id=\"{p}-ordering_key\" name=\"ordering_key\" type=\"text\" size=\"20\" \
         placeholder=\"data.uid\" value=\"{ordering}\" aria-describedby=\"{p}-ordering_key-error\">\
         <span id=\"{p}-ordering_key-error\" class=\"field-error\" role=\"alert\"></span></p>\
         {signing}<p><button type=\"submit\">{submit}</button> \
         <span id=\"{p}-error\" class=\"field-error\" role=\"alert\"></span></p></form>\
         <div id=\"{p}-done\" class=\"done\" role=\"status\" hidden></div></section>",
        p = prefix,
        v = esc(&patterns.join(", ")),
        ordering = esc(current.and_then(|r| r.ordering_key.as_deref()).unwrap_or("")),
    );
    s
}

/// The signing scheme (SPEC 4), a labelled radio group with its error element.
fn signing_choice(prefix: &str) -> String {
    format!(
        "<fieldset aria-describedby=\"{prefix}-signing-error\"><legend>Signing scheme</legend>\
         <label><input type=\"radio\" name=\"signing\" value=\"hmac-sha256\" checked> \
         HMAC-SHA256 (shared secret)</label>\
         <label><input type=\"radio\" name=\"signing\" value=\"ed25519\"> \
         Ed25519 (public key)</label>\
         <span id=\"{prefix}-signing-error\" class=\"field-error\" role=\"alert\"></span></fieldset>"
    )
}

/// A labelled text input with its error element.
fn text_field(
    prefix: &str,
    name: &str,
    label: &str,
    kind: &str,
    value: &str,
    placeholder: &str,
) -> String {
    let required = if name == "url" { " required" } else { "" };
    format!(
        "<p><label for=\"{prefix}-{name}\">{label}</label><br>\
         <input id=\"{prefix}-{name}\" name=\"{name}\" type=\"{kind}\" size=\"40\" value=\"{v}\" \
         placeholder=\"{ph}\" aria-describedby=\"{prefix}-{name}-error\"{required}>\
         <span id=\"{prefix}-{name}-error\" class=\"field-error\" role=\"alert\"></span></p>",
        v = esc(value),
        ph = esc(placeholder),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_shows_the_endpoints_values_and_keeps_its_wildcards() {
        let catalog = Catalog::new(&[]);
        let mut rec = EndpointRecord::new(
            "ep_1".into(),
            "t".into(),
            "https://example.com/a?b=1&c=\"2\"".into(),
            vec!["outbound.delivered".into(), "inbound.*".into()],
            "sealed".into(),
            0,
        );
        rec.rate_limit = Some(7);
        let form = endpoint_form(&catalog, "edit", Some(&rec));
        assert!(form.contains("value=\"https://example.com/a?b=1&amp;c=&quot;2&quot;\""));
        assert!(form.contains("value=\"outbound.delivered\" checked"));
        assert!(!form.contains("value=\"outbound.bounced\" checked"));
        assert!(form.contains(
            "id=\"edit-patterns\" name=\"patterns\" type=\"text\" size=\"40\" value=\"inbound.*\""
        ));
        assert!(form.contains("value=\"7\""));
        assert!(
            !form.contains("name=\"signing\""),
            "the scheme is not changed by editing"
        );
        let add = endpoint_form(&catalog, "add", None);
        assert!(add.contains("id=\"add-url-error\""));
        assert_eq!(
            add.matches(" checked").count(),
            1,
            "only the default scheme: {add}"
        );
        assert!(add.contains("value=\"hmac-sha256\" checked> HMAC-SHA256 (shared secret)"));
        assert!(add.contains("value=\"ed25519\"> Ed25519 (public key)"));
    }
}
