//! The collector's URL and protocol, from the configuration and the `OTEL_*` variables.

use crate::Error;

/// The collector's address when neither [`OtelConfig::endpoint`] nor an environment variable
/// sets one: a collector on this host, OTLP/HTTP port.
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
const TRACES_PATH: &str = "/v1/traces";

/// Resolves the traces URL as [`OtelConfig::traces_endpoint`] says, reading variables with
/// `env`.
pub(crate) fn traces_endpoint(
    explicit: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    let non_empty = |var: &str| env(var).filter(|v| !v.trim().is_empty());
    let url = match explicit {
        Some(url) => with_traces_path(url),
        None => match non_empty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => url,
            None => with_traces_path(
                &non_empty("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
            ),
        },
    };
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url)
    } else {
        Err(Error::Endpoint { url })
    }
}

/// `base` followed by `/v1/traces`, unless it ends with it already.
fn with_traces_path(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        base.to_owned()
    } else {
        format!("{base}{TRACES_PATH}")
    }
}

/// Fails if the environment asks for an OTLP protocol other than `http/protobuf`.
pub(crate) fn check_protocol(env: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(value) = env(var).filter(|v| !v.trim().is_empty()) {
            return match value.trim() {
                "http/protobuf" => Ok(()),
                _ => Err(Error::Protocol { var, value }),
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_endpoint_comes_from_code_then_the_traces_variable_then_the_base_variable() {
        let both = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:1/custom",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:2"),
        ];
        assert_eq!(
            traces_endpoint(Some("http://code:3"), env(&both)).unwrap(),
            "http://code:3/v1/traces"
        );
        // The signal's own variable is the full URL, taken as it is.
        assert_eq!(
            traces_endpoint(None, env(&both)).unwrap(),
            "http://traces:1/custom"
        );
        assert_eq!(
            traces_endpoint(None, env(&both[1..])).unwrap(),
            "http://base:2/v1/traces"
        );
        assert_eq!(
            traces_endpoint(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])).unwrap(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            traces_endpoint(Some("https://otlp.example/v1/traces/"), env(&[])).unwrap(),
            "https://otlp.example/v1/traces"
        );
    }

    #[test]
    fn an_endpoint_without_a_scheme_is_an_error_naming_it() {
        let e = traces_endpoint(
            None,
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
        )
        .unwrap_err();
        assert!(matches!(&e, Error::Endpoint { url } if url == "collector:4318/v1/traces"));
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
    }

    #[test]
    fn only_the_http_protobuf_protocol_is_accepted() {
        assert!(check_protocol(env(&[])).is_ok());
        assert!(check_protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])).is_ok());
        let e = check_protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap_err();
        assert!(
            e.to_string()
                .contains("OTEL_EXPORTER_OTLP_PROTOCOL is `grpc`"),
            "{e}"
        );
        // The signal's own variable wins.
        let vars = [
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        assert!(check_protocol(env(&vars)).is_ok());
        let vars = [("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")];
        assert!(matches!(
            check_protocol(env(&vars)),
            Err(Error::Protocol {
                var: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                ..
            })
        ));
    }
}
