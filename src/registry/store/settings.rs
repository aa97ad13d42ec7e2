//! Compatibility levels and modes, global and per subject.

use super::super::compat::Level;
use super::{DEFAULT_LEVEL, Mode};
use super::{GLOBAL, RegistryError, Store};

impl Store {
    /// The compatibility level of `subject` (`None`: the global one). Without a level of its
    /// own a subject has the global level if `default_to_global`, else 40408.
    pub fn level(&self, subject: &str, default_to_global: bool) -> Result<Level, RegistryError> {
        if let Some(level) = self.setting(&self.config, subject)? {
            return Level::parse(&level)
                .ok_or_else(|| RegistryError::damaged("a stored level is unknown"));
        }
        if subject != GLOBAL && !default_to_global {
            return Err(RegistryError::new(
                40408,
                format!("Subject '{subject}' does not have subject-level compatibility configured"),
            ));
        }
        Ok(match self.setting(&self.config, GLOBAL)? {
            Some(level) => Level::parse(&level)
                .ok_or_else(|| RegistryError::damaged("a stored level is unknown"))?,
            None => DEFAULT_LEVEL,
        })
    }

    /// Sets the level of `subject` (`""`: the global one).
    pub async fn set_level(&self, subject: &str, level: Level) -> Result<(), RegistryError> {
        self.put(&self.config, subject, level.as_str()).await
    }

    /// Removes `subject`'s own level; it follows the global one again. Returns the old one.
    pub async fn delete_level(&self, subject: &str) -> Result<Level, RegistryError> {
        let old = self.level(subject, false)?;
        self.config.remove(subject).map_err(RegistryError::store)?;
        crate::storage::flush(&self.db)
            .await
            .map_err(RegistryError::store)?;
        Ok(old)
    }

    /// The mode of `subject` (`""`: the global one); subjects without one follow the global.
    pub fn mode(&self, subject: &str) -> Result<Mode, RegistryError> {
        for key in [subject, GLOBAL] {
            if let Some(m) = self.setting(&self.modes, key)? {
                return Mode::parse(&m)
                    .map_err(|_| RegistryError::damaged("a stored mode is unknown"));
            }
        }
        Ok(Mode::ReadWrite)
    }

    /// Sets the mode of `subject` (`""`: the global one).
    pub async fn set_mode(&self, subject: &str, mode: Mode) -> Result<(), RegistryError> {
        self.put(&self.modes, subject, mode.as_str()).await
    }

    pub(super) fn setting(
        &self,
        tree: &sled::Tree,
        key: &str,
    ) -> Result<Option<String>, RegistryError> {
        tree.get(key)
            .map_err(RegistryError::store)?
            .map(|v| {
                String::from_utf8(v.to_vec())
                    .map_err(|_| RegistryError::damaged("a stored setting is not text"))
            })
            .transpose()
    }

    pub(super) async fn put(
        &self,
        tree: &sled::Tree,
        key: &str,
        value: &str,
    ) -> Result<(), RegistryError> {
        tree.insert(key, value.as_bytes())
            .map_err(RegistryError::store)?;
        crate::storage::flush(&self.db)
            .await
            .map_err(RegistryError::store)?;
        Ok(())
    }
}
