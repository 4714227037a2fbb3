//! The normalize transform: units to Polity's canonical UN/CEFACT units, and privacy
//! classes from policy.
//!
//! Sources hand over observations in whatever units the city's devices report (°F, US
//! gallons, Wh, mph); after normalization every number of a quantity is in that
//! quantity's canonical unit, so national views compare like with like. Numbers in
//! unknown units are kept as they are, with their unit code, never guessed at.

use std::{collections::HashMap, sync::Arc};

use polity_model::{Batch, PrivacyClass, Value, units};

/// Normalizes batches in place. Built from config; cheap to share.
#[derive(Debug, Default, Clone)]
pub struct Normalizer {
    /// Privacy class per expanded attribute IRI, raising the class a source gave.
    privacy: HashMap<Arc<str>, PrivacyClass>,
    /// Pseudonymization and coarsening, after classification.
    protector: Option<crate::protect::Protector>,
}

impl Normalizer {
    /// A normalizer that converts units and applies no privacy policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies attribute `attr` (expanded IRI) as at least `class`.
    pub fn with_privacy(mut self, attr: &str, class: PrivacyClass) -> Self {
        self.privacy.insert(Arc::from(attr), class);
        self
    }

    /// Pseudonymizes identifiers and coarsens personal locations with `p`.
    pub fn with_protector(mut self, p: crate::protect::Protector) -> Self {
        self.protector = Some(p);
        self
    }

    /// Converts every numeric observation to its canonical unit and applies privacy
    /// policy: classes, then pseudonymization and coarsening.
    pub fn normalize(&self, batch: &mut Batch) {
        for o in &mut batch.observations {
            if let (Value::Number(v), Some(u)) = (&o.value, o.unit) {
                let (v2, u2) = units::normalize(*v, u);
                o.value = Value::Number(v2);
                o.unit = Some(u2);
            }
            if let Some(&c) = self.privacy.get(&o.attr) {
                o.privacy = o.privacy.max(c);
            }
        }
        if let Some(p) = &self.protector {
            p.protect(batch);
        }
    }
}
