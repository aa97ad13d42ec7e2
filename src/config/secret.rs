//! Secrets in the configuration: readable by the code that sends them, printed as `***`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// A password or other secret: readable by the code that needs it, printed as `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one call that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d).map(Secret)
    }
}

/// Any scalar as a string, so a numeric password in an environment variable works and a type
/// error can never echo the value back into a log.
pub(super) fn scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    Ok(
        match Scalar::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a string, number or boolean"))?
        {
            Scalar::S(s) => s,
            Scalar::I(i) => i.to_string(),
            Scalar::F(f) => f.to_string(),
            Scalar::B(b) => b.to_string(),
        },
    )
}

/// A table of librdkafka properties: any scalar value is taken as its string (`linger.ms = 5`
/// as `"5"`), and a wrong value is never echoed, since some hold credentials.
pub(super) fn properties<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Value(String);
    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Given {
                #[serde(deserialize_with = "scalar")]
                Scalar(String),
                // `sasl.password = "x"` unquoted is the table `sasl` holding `password`.
                Table(BTreeMap<String, serde::de::IgnoredAny>),
            }
            match Given::deserialize(d)
                .map_err(|_| serde::de::Error::custom("expected a string, number or boolean"))?
            {
                Given::Scalar(s) => Ok(Value(s)),
                Given::Table(inner) => {
                    let rest = inner.keys().next().map_or("", String::as_str);
                    Err(serde::de::Error::custom(format!(
                        "is a table holding `{rest}`: quote a property name with dots whole \
                         (`\"sasl.password\" = ...`), and in an environment variable keep its \
                         dots (`SLUICE_KAFKA__PROPERTIES__SASL.PASSWORD`)"
                    )))
                }
            }
        }
    }
    let table = BTreeMap::<String, Value>::deserialize(d)?;
    Ok(table.into_iter().map(|(k, Value(v))| (k, v)).collect())
}
