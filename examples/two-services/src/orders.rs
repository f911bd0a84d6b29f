//! The orders service's domain: an order is placed once.

use interlock::prelude::*;

/// Why an order refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The order exists.
    #[error("order already placed")]
    AlreadyPlaced,
    /// Nothing to ship.
    #[error("an order needs a quantity above zero")]
    NoQuantity,
}

/// An order was placed. The shipping service decodes it from the broker:
/// the event's name and schema are the contract between the services.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "orders.placed")]
pub struct OrderPlaced {
    /// The order.
    pub order: Ulid,
    /// What was ordered.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// Place an order.
#[derive(Command, Clone, Debug, PartialEq)]
pub struct PlaceOrder {
    /// The order.
    #[aggregate_id]
    pub order: Ulid,
    /// What.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// An order.
#[derive(Default, Debug)]
pub struct Order {
    placed: bool,
}

#[aggregate(name = "orders.order")]
impl Order {
    #[handles_command]
    fn place(&self, cmd: PlaceOrder) -> Result<OrderPlaced, OrderError> {
        if self.placed {
            return Err(OrderError::AlreadyPlaced);
        }
        if cmd.quantity == 0 {
            return Err(OrderError::NoQuantity);
        }
        Ok(OrderPlaced {
            order: cmd.order,
            item: cmd.item,
            quantity: cmd.quantity,
        })
    }

    #[applies_event]
    fn placed(&mut self, _e: &OrderPlaced) {
        self.placed = true;
    }
}
