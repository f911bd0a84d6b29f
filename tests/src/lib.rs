//! Shared domains for the integration tests in `tests/`.

pub mod bank {
    //! A bank account: open, deposit, withdraw; one upcast event.

    use interlock::prelude::*;
    use interlock::store::EventStore;

    /// Account errors.
    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    pub enum BankError {
        /// Not enough money.
        #[error("insufficient funds: balance {balance}, requested {requested}")]
        InsufficientFunds {
            /// The balance.
            balance: u64,
            /// The amount asked for.
            requested: u64,
        },
        /// The account is not open.
        #[error("account is not open")]
        NotOpen,
        /// The account is already open.
        #[error("account is already open")]
        AlreadyOpen,
    }

    /// An account was opened.
    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "bank.account_opened")]
    pub struct AccountOpened {
        /// The owner.
        pub owner: String,
    }

    /// Money was deposited (version 1: no currency).
    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "bank.money_deposited", version = 1)]
    pub struct MoneyDepositedV1 {
        /// The amount.
        pub amount: u64,
    }

    /// Money was deposited.
    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "bank.money_deposited", version = 2, upcast_from = MoneyDepositedV1)]
    pub struct MoneyDeposited {
        /// The amount.
        pub amount: u64,
        /// The currency.
        pub currency: String,
    }

    impl From<MoneyDepositedV1> for MoneyDeposited {
        fn from(old: MoneyDepositedV1) -> Self {
            MoneyDeposited {
                amount: old.amount,
                currency: "EUR".into(),
            }
        }
    }

    /// Money was withdrawn.
    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "bank.money_withdrawn")]
    pub struct MoneyWithdrawn {
        /// The amount.
        pub amount: u64,
    }

    /// Open an account.
    #[derive(Command, Clone, Debug)]
    pub struct OpenAccount {
        /// The account.
        #[aggregate_id]
        pub account: Ulid,
        /// The owner.
        pub owner: String,
    }

    /// Deposit money.
    #[derive(Command, Clone, Debug)]
    pub struct Deposit {
        /// The account.
        #[aggregate_id]
        pub account: Ulid,
        /// The amount.
        pub amount: u64,
        /// Makes the deposit idempotent.
        #[command_id]
        pub id: Option<CommandId>,
    }

    /// Withdraw money; returns the balance after.
    #[derive(Command, Clone, Debug)]
    pub struct Withdraw {
        /// The account.
        #[aggregate_id]
        pub account: Ulid,
        /// The amount.
        pub amount: u64,
    }

    /// Deposit and immediately withdraw (two events from one command).
    #[derive(Command, Clone, Debug)]
    pub struct Churn {
        /// The account.
        #[aggregate_id]
        pub account: Ulid,
        /// The amount moved in and out.
        pub amount: u64,
    }

    /// A fee policy, registered as a service.
    #[derive(Debug, Clone)]
    pub struct FeePolicy {
        /// Fee per withdrawal.
        pub fee: u64,
    }

    /// Withdraw with the policy's fee, as an async handler.
    #[derive(Command, Clone, Debug)]
    pub struct WithdrawWithFee {
        /// The account.
        #[aggregate_id]
        pub account: Ulid,
        /// The amount.
        pub amount: u64,
    }

    /// The account state.
    #[derive(Default, Debug, Serialize, Deserialize, Clone, PartialEq)]
    pub struct BankAccount {
        /// Whether it is open.
        pub open: bool,
        /// The owner.
        pub owner: String,
        /// The balance.
        pub balance: u64,
        /// How many deposits were made.
        pub deposits: u64,
    }

    #[aggregate(name = "bank.account")]
    impl BankAccount {
        #[handles_command]
        fn open(&self, cmd: OpenAccount) -> Result<AccountOpened, BankError> {
            if self.open {
                return Err(BankError::AlreadyOpen);
            }
            Ok(AccountOpened { owner: cmd.owner })
        }

        #[handles_command]
        fn deposit(&self, cmd: Deposit) -> Result<MoneyDeposited, BankError> {
            if !self.open {
                return Err(BankError::NotOpen);
            }
            Ok(MoneyDeposited {
                amount: cmd.amount,
                currency: "EUR".into(),
            })
        }

        #[handles_command]
        fn withdraw(&self, cmd: Withdraw) -> Result<Reply<u64, MoneyWithdrawn>, BankError> {
            if !self.open {
                return Err(BankError::NotOpen);
            }
            if cmd.amount > self.balance {
                return Err(BankError::InsufficientFunds {
                    balance: self.balance,
                    requested: cmd.amount,
                });
            }
            Ok(Reply::new(
                self.balance - cmd.amount,
                MoneyWithdrawn { amount: cmd.amount },
            ))
        }

        #[handles_command]
        fn churn(&self, cmd: Churn) -> (MoneyDeposited, MoneyWithdrawn, MoneyDeposited) {
            (
                MoneyDeposited {
                    amount: cmd.amount,
                    currency: "EUR".into(),
                },
                MoneyWithdrawn { amount: cmd.amount },
                MoneyDeposited {
                    amount: 0,
                    currency: "EUR".into(),
                },
            )
        }

        #[handles_command]
        async fn withdraw_with_fee(
            &self,
            cmd: WithdrawWithFee,
            policy: &FeePolicy,
        ) -> Result<Vec<MoneyWithdrawn>, BankError> {
            tokio::task::yield_now().await;
            let total = cmd.amount + policy.fee;
            if total > self.balance {
                return Err(BankError::InsufficientFunds {
                    balance: self.balance,
                    requested: total,
                });
            }
            Ok(vec![
                MoneyWithdrawn { amount: cmd.amount },
                MoneyWithdrawn { amount: policy.fee },
            ])
        }

        #[applies_event]
        fn opened(&mut self, e: &AccountOpened) {
            self.open = true;
            self.owner.clone_from(&e.owner);
        }

        #[applies_event]
        fn deposited(&mut self, e: &MoneyDeposited) {
            self.balance += e.amount;
            self.deposits += 1;
        }

        #[applies_event]
        fn withdrawn(&mut self, e: &MoneyWithdrawn) {
            self.balance -= e.amount;
        }
    }

    /// A builder with the bank registered (no fee).
    pub fn bank_builder() -> interlock::ApplicationBuilder {
        Application::builder()
            .aggregate::<BankAccount>()
            .service(FeePolicy { fee: 0 })
    }

    /// An application with the bank registered, on the given store.
    pub async fn app_on(store: impl EventStore) -> Application {
        match Application::builder()
            .aggregate::<BankAccount>()
            .service(FeePolicy { fee: 1 })
            .event_store(store)
            .build()
            .await
        {
            Ok(app) => app,
            Err(e) => unreachable!("the bank application builds: {e}"),
        }
    }
}

pub mod services {
    //! Connections to the test services: PostgreSQL from
    //! `INTERLOCK_POSTGRES_URL`, a fresh schema per store so runs never
    //! collide. Unset: `None` (the test prints a loud skip, or fails under
    //! `INTERLOCK_REQUIRE_SERVICES=1`).

    use interlock_sql::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore};

    /// The PostgreSQL URL, or `None` when `INTERLOCK_POSTGRES_URL` is unset:
    /// a loud skip, or a failure under `INTERLOCK_REQUIRE_SERVICES=1`. Every
    /// PostgreSQL test gets its URL here.
    pub fn postgres_url() -> Option<String> {
        let url = std::env::var("INTERLOCK_POSTGRES_URL").ok().filter(|u| !u.is_empty());
        if url.is_none() {
            interlock::testing::skip_or_fail("PostgreSQL (set INTERLOCK_POSTGRES_URL)");
        }
        url
    }

    /// A PostgreSQL store in a schema of its own, or `None` without a URL
    /// (see [`postgres_url`]).
    pub async fn postgres() -> Option<PostgresStore> {
        let url = postgres_url()?;
        let schema = format!("t_{}", ulid::Ulid::new().to_string().to_lowercase());
        let config = PostgresConfig::new(url).schema(schema).max_connections(8);
        match PostgresStore::open(config).await {
            Ok(store) => Some(store),
            Err(e) => {
                if interlock::testing::services_required() {
                    panic!("PostgreSQL is required but cannot be opened: {e}");
                }
                eprintln!("!!!!!!!! PostgreSQL not reachable: {e}");
                None
            }
        }
    }

    /// The MongoDB URI, or `None` when `INTERLOCK_MONGODB_URI` is unset (a
    /// loud skip, or a failure under `INTERLOCK_REQUIRE_SERVICES=1`).
    pub fn mongodb_uri() -> Option<String> {
        let uri = std::env::var("INTERLOCK_MONGODB_URI").ok().filter(|u| !u.is_empty());
        if uri.is_none() {
            interlock::testing::skip_or_fail("MongoDB (set INTERLOCK_MONGODB_URI; scripts/mongodb.sh starts a server)");
        }
        uri
    }

    /// A MongoDB store in a database of its own, or `None` without a URI
    /// (see [`mongodb_uri`]).
    pub async fn mongodb() -> Option<interlock::mongodb::MongoStore> {
        let uri = mongodb_uri()?;
        let database = format!("t_{}", ulid::Ulid::new().to_string().to_lowercase());
        match interlock::mongodb::MongoStore::open(interlock::mongodb::MongoConfig::new(uri).database(database)).await {
            Ok(store) => Some(store),
            Err(e) => {
                if interlock::testing::services_required() {
                    panic!("MongoDB is required but cannot be opened: {e}");
                }
                eprintln!("!!!!!!!! MongoDB not reachable: {e}");
                None
            }
        }
    }

    /// A SQLite store in a fresh file under the system temp directory.
    pub async fn sqlite_file() -> Option<SqliteStore> {
        let path = std::env::temp_dir().join(format!("interlock-test-{}.db", ulid::Ulid::new()));
        Some(
            SqliteStore::open(SqliteConfig::file(path))
                .await
                .expect("open SQLite file"),
        )
    }

    /// A private in-memory SQLite store.
    pub async fn sqlite_memory() -> Option<SqliteStore> {
        Some(
            SqliteStore::open(SqliteConfig::memory())
                .await
                .expect("open SQLite in memory"),
        )
    }
}

pub mod hooked {
    //! An in-memory event store whose appends go through a hook: slow,
    //! failing or watched stores for tests, without writing every method.

    use interlock::StreamId;
    use interlock::store::{
        BoxFuture, Committed, EventFilter, EventStore, ExpectedVersion, MemoryEventStore, NewEvent, RecordedEvent,
        RewrittenEvent, StoreError,
    };
    use interlock::{Position, Version};

    /// What happens around an append.
    pub trait AppendHook: Send + Sync + 'static {
        /// Appends through `inner` (or fails, or waits first).
        fn append<'a>(
            &'a self,
            inner: &'a MemoryEventStore,
            stream: &'a StreamId,
            expected: ExpectedVersion,
            events: Vec<NewEvent>,
        ) -> BoxFuture<'a, Result<Committed, StoreError>>;
    }

    /// A `MemoryEventStore` whose appends run through `hook`; every other
    /// method is the memory store's.
    pub struct Hooked<H> {
        /// The store underneath.
        pub inner: MemoryEventStore,
        /// The hook.
        pub hook: H,
    }

    impl<H> Hooked<H> {
        /// A fresh store with `hook`.
        pub fn new(hook: H) -> Self {
            Self {
                inner: MemoryEventStore::new(),
                hook,
            }
        }
    }

    impl<H: AppendHook> EventStore for Hooked<H> {
        fn append<'a>(
            &'a self,
            stream: &'a StreamId,
            expected: ExpectedVersion,
            events: Vec<NewEvent>,
        ) -> BoxFuture<'a, Result<Committed, StoreError>> {
            self.hook.append(&self.inner, stream, expected, events)
        }
        fn append_atomic(
            &self,
            append: interlock::store::AtomicAppend,
        ) -> BoxFuture<'_, Result<Vec<Committed>, StoreError>> {
            self.inner.append_atomic(append)
        }
        fn read_stream<'a>(
            &'a self,
            stream: &'a StreamId,
            from: Version,
            to: Option<Version>,
        ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
            self.inner.read_stream(stream, from, to)
        }
        fn read_all<'a>(
            &'a self,
            after: Position,
            limit: usize,
            filter: &'a EventFilter,
        ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
            self.inner.read_all(after, limit, filter)
        }
        fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
            self.inner.stream_version(stream)
        }
        fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
            self.inner.head()
        }
        fn scan<'a>(
            &'a self,
            scan: &'a interlock::store::Scan,
        ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
            self.inner.scan(scan)
        }
        fn rewrite(&self, position: Position, event: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
            self.inner.rewrite(position, event)
        }
    }
}

pub mod payments {
    //! An order paid by a saga: `OrderPlaced` starts the saga, which
    //! charges the card with a command that has no `#[command_id]` of its
    //! own. The crash tests kill the process at every point of that step
    //! and check that the card is charged exactly once.

    use interlock::prelude::*;

    /// An order was placed.
    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "payments.order_placed")]
    pub struct OrderPlaced {
        /// The order.
        pub order: Ulid,
        /// The card to charge.
        pub card: Ulid,
        /// The amount.
        pub amount: u64,
    }

    /// An order was cancelled.
    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "payments.order_cancelled")]
    pub struct OrderCancelled {
        /// The order.
        pub order: Ulid,
        /// Why.
        pub reason: String,
    }

    /// A card was charged.
    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "payments.card_charged")]
    pub struct CardCharged {
        /// The card.
        pub card: Ulid,
        /// The order paid.
        pub order: Ulid,
        /// The amount.
        pub amount: u64,
    }

    /// Place an order.
    #[derive(Command, Clone, Debug)]
    pub struct PlaceOrder {
        /// The order.
        #[aggregate_id]
        pub order: Ulid,
        /// The card.
        pub card: Ulid,
        /// The amount.
        pub amount: u64,
    }

    /// Cancel an order.
    #[derive(Command, Clone, Debug)]
    pub struct CancelOrder {
        /// The order.
        #[aggregate_id]
        pub order: Ulid,
        /// Why.
        pub reason: String,
    }

    /// Why a card refuses a charge.
    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    pub enum CardError {
        /// Above the card's limit.
        #[error("declined: {amount} is above the limit of {limit}")]
        Declined {
            /// The amount asked.
            amount: u64,
            /// The limit.
            limit: u64,
        },
    }

    /// The most a card is charged at once.
    pub const CARD_LIMIT: u64 = 1000;

    /// Charge a card (no command id: the saga's derived id makes it
    /// idempotent).
    #[derive(Command, Clone, Debug)]
    pub struct ChargeCard {
        /// The card.
        #[aggregate_id]
        pub card: Ulid,
        /// The order.
        pub order: Ulid,
        /// The amount.
        pub amount: u64,
    }

    /// An order.
    #[derive(Default)]
    pub struct Order {
        placed: bool,
    }

    #[aggregate(name = "payments.order")]
    impl Order {
        #[handles_command]
        fn cancel(&self, c: CancelOrder) -> OrderCancelled {
            OrderCancelled {
                order: c.order,
                reason: c.reason,
            }
        }

        #[applies_event]
        fn cancelled(&mut self, _: &OrderCancelled) {}

        #[handles_command]
        fn place(&self, c: PlaceOrder) -> Vec<OrderPlaced> {
            if self.placed {
                return Vec::new();
            }
            vec![OrderPlaced {
                order: c.order,
                card: c.card,
                amount: c.amount,
            }]
        }

        #[applies_event]
        fn placed(&mut self, _: &OrderPlaced) {
            self.placed = true;
        }
    }

    /// A card: what was charged on it.
    #[derive(Default)]
    pub struct Card {
        /// The total charged.
        pub charged: u64,
    }

    #[aggregate(name = "payments.card")]
    impl Card {
        #[handles_command]
        fn charge(&self, c: ChargeCard) -> Result<CardCharged, CardError> {
            if c.amount > CARD_LIMIT {
                return Err(CardError::Declined {
                    amount: c.amount,
                    limit: CARD_LIMIT,
                });
            }
            Ok(CardCharged {
                card: c.card,
                order: c.order,
                amount: c.amount,
            })
        }

        #[applies_event]
        fn charged(&mut self, e: &CardCharged) {
            self.charged += e.amount;
        }
    }

    /// Pays an order.
    #[derive(Default, Debug, Serialize, Deserialize, PartialEq)]
    pub struct Payment {
        /// Whether the charge went through.
        pub charged: bool,
    }

    #[saga(name = "payments.payment")]
    impl Payment {
        #[saga_step(start, key = order)]
        async fn placed(&mut self, e: &OrderPlaced, ctx: &mut SagaContext) -> SagaResult {
            ctx.dispatch(ChargeCard {
                card: e.card,
                order: e.order,
                amount: e.amount,
            })
            .await?;
            self.charged = true;
            Ok(())
        }

        /// A declined charge cancels the order.
        #[saga_compensation]
        async fn undo(&mut self, failure: &SagaFailure, ctx: &mut SagaContext) -> SagaResult {
            let order = ctx
                .key()
                .parse::<Ulid>()
                .map_err(|e| interlock::HandlerFailure::msg(e.to_string()))?;
            ctx.dispatch(CancelOrder {
                order,
                reason: failure.error.clone(),
            })
            .await?;
            Ok(())
        }
    }

    /// The application of the crash tests, on whatever stores the builder
    /// is given.
    pub fn builder() -> interlock::ApplicationBuilder {
        Application::builder()
            .aggregate::<Order>()
            .aggregate::<Card>()
            .saga_with::<Payment>(interlock::SubscriberConfig::new().retry(
                50,
                std::time::Duration::from_millis(10),
                std::time::Duration::from_millis(100),
            ))
            .idempotency_lease(std::time::Duration::from_millis(300))
            .background(false)
    }
}

pub mod ledger {
    //! Exactly-once SQL read models: a ledger table in the store's own
    //! database, written in the transaction that saves the projection's
    //! checkpoint. The table has no key, so an event applied twice shows
    //! as a duplicate row, and one skipped as a missing row.

    use interlock::prelude::*;
    use interlock_sql::{PostgresTransaction, SqliteTransaction};

    use crate::bank::MoneyDeposited;

    /// The table, created by the tests.
    pub const CREATE: &str = "CREATE TABLE IF NOT EXISTS ledger (event_id TEXT NOT NULL, amount BIGINT NOT NULL)";

    fn amount(e: &MoneyDeposited) -> Result<i64, interlock::HandlerFailure> {
        i64::try_from(e.amount).map_err(|e| interlock::HandlerFailure::msg(e.to_string()))
    }

    /// The ledger on SQLite.
    #[derive(Default)]
    pub struct SqliteLedger;

    #[projection(name = "tests.ledger", model = durable)]
    impl SqliteLedger {
        #[handles_event]
        async fn deposited(
            &mut self,
            e: &MoneyDeposited,
            meta: &EventMeta,
            tx: &mut SqliteTransaction,
        ) -> Result<(), interlock::HandlerFailure> {
            sqlx::query("INSERT INTO ledger (event_id, amount) VALUES ($1, $2)")
                .bind(meta.event_id.to_string())
                .bind(amount(e)?)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    }

    /// Creates the ledger table in the store's `schema` on PostgreSQL.
    ///
    /// # Panics
    ///
    /// When the database refuses (a failed test).
    #[allow(clippy::expect_used)]
    pub async fn create_postgres(store: &interlock_sql::PostgresStore, schema: &str) {
        let mut tx = store.begin().await.expect("begin");
        // With the order rows were written in and each event's stream and
        // version, to check per-stream order.
        let create = format!(
            "CREATE TABLE IF NOT EXISTS \"{schema}\".ledger (n BIGSERIAL, event_id TEXT NOT NULL, amount BIGINT NOT NULL, stream TEXT NOT NULL, version BIGINT NOT NULL)"
        );
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut *tx)
            .await
            .expect("table");
        tx.commit().await.expect("commit");
    }

    /// The ledger's rows, distinct event ids and sum of amounts on
    /// PostgreSQL: equal to the events, the events and their sum when each
    /// was applied exactly once.
    ///
    /// # Panics
    ///
    /// When the database refuses (a failed test).
    #[allow(clippy::expect_used)]
    pub async fn postgres_counts(store: &interlock_sql::PostgresStore, schema: &str) -> (i64, i64, i64) {
        let mut tx = store.begin().await.expect("begin");
        let sql = format!(
            "SELECT COUNT(*), COUNT(DISTINCT event_id), COALESCE(SUM(amount), 0)::BIGINT FROM \"{schema}\".ledger"
        );
        let counts = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *tx)
            .await
            .expect("count");
        tx.rollback().await.expect("rollback");
        counts
    }

    /// The rows of the PostgreSQL ledger written out of their stream's
    /// order (a version not above the one written before it): 0 when
    /// every stream was applied in order.
    ///
    /// # Panics
    ///
    /// When the database refuses (a failed test).
    #[allow(clippy::expect_used)]
    pub async fn postgres_out_of_order(store: &interlock_sql::PostgresStore, schema: &str) -> i64 {
        let mut tx = store.begin().await.expect("begin");
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT version, LAG(version) OVER (PARTITION BY stream ORDER BY n) AS before FROM \"{schema}\".ledger) AS rows WHERE version <= before"
        );
        let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *tx)
            .await
            .expect("count");
        tx.rollback().await.expect("rollback");
        count
    }

    /// The ledger on PostgreSQL (tables in the store's schema, found
    /// through the search path the test sets on the table name).
    #[derive(Default)]
    pub struct PostgresLedger {
        /// The schema of the store's tables.
        pub schema: String,
    }

    #[projection(name = "tests.ledger", model = durable)]
    impl PostgresLedger {
        #[handles_event]
        async fn deposited(
            &mut self,
            e: &MoneyDeposited,
            meta: &EventMeta,
            tx: &mut PostgresTransaction,
        ) -> Result<(), interlock::HandlerFailure> {
            let sql = format!(
                "INSERT INTO \"{}\".ledger (event_id, amount, stream, version) VALUES ($1, $2, $3, $4)",
                self.schema
            );
            let version = i64::try_from(meta.version.0).map_err(|e| interlock::HandlerFailure::msg(e.to_string()))?;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(meta.event_id.to_string())
                .bind(amount(e)?)
                .bind(meta.stream.to_string())
                .bind(version)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    }
}

pub mod idempotency {
    //! Idempotency stores for the crash tests.

    use std::sync::Arc;

    use interlock::CommandId;
    use interlock::Timestamp;
    use interlock::store::{BoxFuture, Claim, IdempotencyRecord, IdempotencyStore, MemoryIdempotencyStore, StoreError};

    /// An idempotency store whose `complete` is lost, like a process killed
    /// after its command's events were committed and before its outcome was
    /// recorded.
    pub struct LosesOutcomes(pub Arc<MemoryIdempotencyStore>);

    impl IdempotencyStore for LosesOutcomes {
        fn claim(
            &self,
            id: CommandId,
            now: Timestamp,
            lease: std::time::Duration,
        ) -> BoxFuture<'_, Result<Claim, StoreError>> {
            self.0.claim(id, now, lease)
        }
        fn complete(&self, _: IdempotencyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(std::future::ready(Ok(())))
        }
        fn release(&self, id: CommandId) -> BoxFuture<'_, Result<(), StoreError>> {
            self.0.release(id)
        }
        fn purge_expired(&self, now: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
            self.0.purge_expired(now)
        }
    }
}

pub mod redis_server {
    //! Redis for tests: the machine's server from `INTERLOCK_REDIS_URL`,
    //! and throwaway `redis-server`s on free loopback ports that fault tests
    //! stop and start (never the machine's).

    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// The machine's Redis URL, or `None` when `INTERLOCK_REDIS_URL` is
    /// unset (a loud skip, or a failure under `INTERLOCK_REQUIRE_SERVICES=1`).
    pub fn redis_url() -> Option<String> {
        let url = std::env::var("INTERLOCK_REDIS_URL").ok().filter(|u| !u.is_empty());
        if url.is_none() {
            interlock::testing::skip_or_fail("Redis (set INTERLOCK_REDIS_URL, e.g. redis://127.0.0.1:6379)");
        }
        url
    }

    /// A `redis-server` of the test's own, in memory, killed on drop.
    pub struct Server {
        port: u16,
        child: Option<Child>,
    }

    impl Server {
        /// A free loopback port.
        pub fn free_port() -> u16 {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        }

        /// Starts a server on `port` and waits until it accepts
        /// connections; `None` when `redis-server` cannot be run.
        pub async fn start(port: u16) -> Option<Self> {
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let mut server = Self {
                port,
                child: Some(child),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    server.stop();
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Some(server)
        }

        /// Its URL.
        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        /// Kills it (its data is gone).
        pub fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop();
        }
    }
}

pub mod nats_server {
    //! NATS for tests: the machine's server from `INTERLOCK_NATS_URL`, and
    //! throwaway `nats-server`s with JetStream on free loopback ports that
    //! fault tests stop and start (never the machine's). A throwaway
    //! server keeps its JetStream data in a directory of its own, so a
    //! restart finds what was stored.

    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// The machine's NATS URL, or `None` when `INTERLOCK_NATS_URL` is unset
    /// (a loud skip, or a failure under `INTERLOCK_REQUIRE_SERVICES=1`).
    pub fn nats_url() -> Option<String> {
        let url = std::env::var("INTERLOCK_NATS_URL").ok().filter(|u| !u.is_empty());
        if url.is_none() {
            interlock::testing::skip_or_fail("NATS (set INTERLOCK_NATS_URL, e.g. nats://127.0.0.1:4222)");
        }
        url
    }

    /// A `nats-server -js` of the test's own, killed on drop (its data
    /// directory removed).
    pub struct Server {
        port: u16,
        dir: PathBuf,
        child: Option<Child>,
    }

    impl Server {
        /// A server on a free port (not started yet).
        pub fn new() -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or(14_222);
            let dir = std::env::temp_dir().join(format!("interlock-nats-{port}-{}", ulid::Ulid::new()));
            Self { port, dir, child: None }
        }

        /// Starts it (again) and waits until it accepts connections;
        /// false when `nats-server` cannot be run.
        pub async fn start(&mut self) -> bool {
            let Ok(child) = Command::new("nats-server")
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
                .arg(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                return false;
            };
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                if Instant::now() > deadline {
                    self.stop();
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // JetStream answers a little after the port opens.
            tokio::time::sleep(Duration::from_millis(200)).await;
            true
        }

        /// Its URL.
        pub fn url(&self) -> String {
            format!("nats://127.0.0.1:{}", self.port)
        }

        /// Kills it (its stored data stays for a restart).
        pub fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Default for Server {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub mod transported {
    //! What the broker fault tests share: a producer relaying deposits to
    //! a transport, and a projection recording the deposits it handled
    //! (and failing while it is "broken", to park them).

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use interlock::prelude::*;
    use interlock::store::{EventTransport, MemoryEventStore};
    use parking_lot::Mutex;

    use crate::bank::{Deposit, MoneyDeposited, OpenAccount, bank_builder};

    /// Dispatches `n` deposits of 1, 2, ..., n to one account through an
    /// application relaying its log to `transport`, and publishes them.
    ///
    /// # Panics
    ///
    /// When a dispatch or the publish fails (a failed test).
    #[allow(clippy::expect_used)]
    pub async fn produce(transport: impl EventTransport, n: u64) {
        let app = bank_builder()
            .event_store(MemoryEventStore::new())
            .publish_to("broker", transport)
            .background(false)
            .build()
            .await
            .expect("build");
        let account = Ulid::new();
        app.dispatch(OpenAccount {
            account,
            owner: "o".into(),
        })
        .await
        .expect("open");
        for amount in 1..=n {
            app.dispatch(Deposit {
                account,
                amount,
                id: None,
            })
            .await
            .expect("deposit");
        }
        app.publish_pending().await.expect("published");
    }

    /// The deposits a projection handled, by event id, in order.
    #[derive(Default)]
    pub struct Seen {
        /// The ids handled.
        pub ids: Arc<Mutex<Vec<interlock::EventId>>>,
        /// While set, every deposit fails (and is parked).
        pub broken: Arc<AtomicBool>,
    }

    #[projection(name = "tests.transported_seen", model = memory)]
    impl Seen {
        #[handles_event]
        fn deposited(&mut self, _e: &MoneyDeposited, meta: &EventMeta) -> Result<(), interlock::HandlerFailure> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(interlock::HandlerFailure::msg("the read model is broken until the fix"));
            }
            self.ids.lock().push(meta.event_id);
            Ok(())
        }
    }

    /// Consumes until `seen` holds `n` ids or 60 s passed (errors, while
    /// the broker is down, are retried).
    pub async fn consume_until(app: &Application, seen: &Arc<Mutex<Vec<interlock::EventId>>>, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.lock().len() < n && Instant::now() < deadline {
            if app.consume_transport(100, Duration::from_millis(300)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// The producer's log of the poison tests: an opening, a deposit, one
    /// with an undecodable payload, one of a schema version no consumer
    /// knows, and a deposit.
    ///
    /// # Panics
    ///
    /// When a dispatch fails (a failed test).
    #[allow(clippy::expect_used)]
    pub async fn poisoned_log() -> Vec<interlock::store::RecordedEvent> {
        let producer = bank_builder()
            .event_store(MemoryEventStore::new())
            .background(false)
            .build()
            .await
            .expect("build");
        let account = Ulid::new();
        producer
            .dispatch(OpenAccount {
                account,
                owner: "o".into(),
            })
            .await
            .expect("open");
        for amount in [1, 2, 3, 4] {
            producer
                .dispatch(Deposit {
                    account,
                    amount,
                    id: None,
                })
                .await
                .expect("deposit");
        }
        let mut events = producer
            .event_store()
            .read_all(interlock::Position::START, 100, &interlock::store::EventFilter::all())
            .await
            .expect("read");
        events[2].payload = bytes::Bytes::from_static(b"{not json");
        events[3].schema_version = interlock::SchemaVersion(99);
        events
    }

    /// Consumes the poisoned log (6 messages with a foreign one) with the
    /// model broken, checks all four deposits parked, then fixes it and
    /// checks the two good ones replay and the two poison ones stay.
    ///
    /// # Panics
    ///
    /// When a check fails (a failed test).
    #[allow(clippy::expect_used, clippy::panic)]
    pub async fn poison_is_parked_and_replays(
        transport: impl EventTransport,
        events: &[interlock::store::RecordedEvent],
    ) {
        let seen = Seen::default();
        let (ids, broken) = (Arc::clone(&seen.ids), Arc::clone(&seen.broken));
        broken.store(true, Ordering::SeqCst);
        let shipping = Application::builder()
            .projection(seen)
            .consume_from("shipping", transport)
            .background(false)
            .build()
            .await
            .expect("build");
        let handle = shipping.projection_handle::<Seen>().expect("registered");
        let deadline = Instant::now() + Duration::from_secs(60);
        while handle.dead_letters().await.expect("letters").len() < 4 && Instant::now() < deadline {
            shipping
                .consume_transport(100, Duration::from_millis(300))
                .await
                .expect("a poison message does not stop the consumer");
        }
        let parked = handle.dead_letters().await.expect("letters");
        assert_eq!(
            parked.len(),
            4,
            "every deposit parked while the model is broken: {parked:?}"
        );
        broken.store(false, Ordering::SeqCst);
        assert_eq!(handle.replay_dead_letters().await.expect("replay"), 2);
        assert_eq!(ids.lock().len(), 2);
        let still = handle.dead_letters().await.expect("letters");
        assert_eq!(still.len(), 2);
        assert!(still.iter().any(|l| l.event.position == events[2].position));
        assert!(
            still
                .iter()
                .any(|l| l.event.position == events[3].position && l.error.contains("99")),
            "{still:?}"
        );
    }
}
