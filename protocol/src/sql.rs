//! Fieldless enums stored as their snake_case names in TEXT columns, on every database
//! sqlx's `Any` driver reaches (SQLite on one node, PostgreSQL in a cluster): sqlx's
//! derive implements `Type` for each database by name, never for `Any`.

use crate::{NotificationFormat, Status};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

/// An enum with a name per variant.
trait TextEnum: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

impl TextEnum for Status {
    const ALL: &'static [Self] = &Status::ALL;
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl TextEnum for NotificationFormat {
    const ALL: &'static [Self] = &[NotificationFormat::Json, NotificationFormat::Slack];
    fn name(self) -> &'static str {
        match self {
            NotificationFormat::Json => "json",
            NotificationFormat::Slack => "slack",
        }
    }
}

macro_rules! text_column {
    ($t:ty) => {
        impl<DB: Database> Type<DB> for $t
        where
            str: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $t
        where
            &'q str: Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                <&str as Encode<'q, DB>>::encode_by_ref(&self.name(), buf)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $t
        where
            &'r str: Decode<'r, DB>,
        {
            fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<'r, DB>>::decode(value)?;
                <$t as TextEnum>::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name() == text)
                    .ok_or_else(|| format!("{text:?} is not a {}", stringify!($t)).into())
            }
        }
    };
}

text_column!(Status);
text_column!(NotificationFormat);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_wire() {
        for status in Status::ALL {
            let json = serde_json::to_string(&status).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", status.name()));
        }
        for format in NotificationFormat::ALL {
            let json = serde_json::to_string(format).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", format.name()));
        }
    }
}
