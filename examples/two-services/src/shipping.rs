//! The shipping service's domain: a shipment per order, created by the
//! `Fulfilment` saga when the order arrives from the broker, and the
//! `ShippingBoard` read model of the orders received.

use interlock::prelude::*;
use interlock::sql::SqliteTransaction;

use crate::orders::OrderPlaced;

/// Why a shipment refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShipmentError {
    /// It exists.
    #[error("shipment already created")]
    AlreadyCreated,
}

/// A shipment was created for an order.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shipping.shipment_created")]
pub struct ShipmentCreated {
    /// The order (and shipment) id.
    pub order: Ulid,
    /// What to ship.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// Create the shipment of an order.
#[derive(Command, Clone, Debug, PartialEq)]
pub struct CreateShipment {
    /// The order.
    #[aggregate_id]
    pub order: Ulid,
    /// What.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// A shipment.
#[derive(Default, Debug)]
pub struct Shipment {
    /// What it ships, once created.
    pub item: Option<String>,
    /// How many.
    pub quantity: u32,
}

#[aggregate(name = "shipping.shipment")]
impl Shipment {
    #[handles_command]
    fn create(&self, cmd: CreateShipment) -> Result<ShipmentCreated, ShipmentError> {
        if self.item.is_some() {
            return Err(ShipmentError::AlreadyCreated);
        }
        Ok(ShipmentCreated {
            order: cmd.order,
            item: cmd.item,
            quantity: cmd.quantity,
        })
    }

    #[applies_event]
    fn created(&mut self, e: &ShipmentCreated) {
        self.item = Some(e.item.clone());
        self.quantity = e.quantity;
    }
}

/// Turns each order that arrives into a shipment.
#[derive(Default, Debug, Serialize, Deserialize, PartialEq)]
pub struct Fulfilment {
    /// The order.
    pub order: Option<Ulid>,
}

#[saga(name = "shipping.fulfilment")]
impl Fulfilment {
    #[saga_step(start, key = order)]
    async fn placed(&mut self, e: &OrderPlaced, ctx: &mut SagaContext) -> SagaResult {
        self.order = Some(e.order);
        let create = CreateShipment {
            order: e.order,
            item: e.item.clone(),
            quantity: e.quantity,
        };
        // Delivered again after a crash: the shipment exists, which is fine.
        match ctx.dispatch(create).await {
            Ok(()) | Err(interlock::CommandError::Domain(ShipmentError::AlreadyCreated)) => {}
            Err(e) => return Err(e.into()),
        }
        ctx.complete();
        Ok(())
    }
}

/// The table of the read model.
pub const CREATE_BOARD: &str = "CREATE TABLE IF NOT EXISTS shipping_board (\
    order_id TEXT PRIMARY KEY, item TEXT NOT NULL, quantity INTEGER NOT NULL, published_position INTEGER NOT NULL)";

/// The orders received, one row each, written in the transaction that
/// saves the projection's checkpoint: an order delivered twice is
/// applied once (a second insert would violate the key).
#[derive(Default)]
pub struct ShippingBoard;

#[projection(name = "shipping.board", model = durable)]
impl ShippingBoard {
    #[handles_event]
    async fn placed(
        &mut self,
        e: &OrderPlaced,
        meta: &EventMeta,
        tx: &mut SqliteTransaction,
    ) -> Result<(), interlock::HandlerFailure> {
        let position = i64::try_from(meta.position.0).map_err(|e| interlock::HandlerFailure::msg(e.to_string()))?;
        sqlx::query(
            "INSERT INTO shipping_board (order_id, item, quantity, published_position) VALUES ($1, $2, $3, $4)",
        )
        .bind(e.order.to_string())
        .bind(&e.item)
        .bind(i64::from(e.quantity))
        .bind(position)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
