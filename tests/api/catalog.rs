//! The catalog: optional auth listings, fresh creation, admin deletion, exact prices.
