//! Commands declared `consistency = category` or `log`: decisions on a view
//! of the whole scope, appended only if the scope is unchanged since.
//! Unique usernames (the signup example) across two application instances
//! on one store, on memory, SQLite and PostgreSQL; a gapless ticket
//! counter under `consistency = log`; the typed failures.

use std::sync::Arc;

use interlock::prelude::*;
use interlock::store::{
    AtomicAppend, BoxFuture, Committed, EventStore, ExpectedVersion, MemoryEventStore, NewEvent, Scope, StoreError,
};
use interlock::{DispatchOptions, EventId, LoadError, SchemaVersion};
use interlock_tests::services;
use signup_example::{ChangeUsername, OwnerOf, Register, SignupError, User, UserRegistered, Usernames};

async fn signup(store: Arc<dyn EventStore>) -> Application {
    Application::builder()
        .aggregate::<User>()
        .projection_with(Usernames::default(), interlock::ProjectionConfig::inline())
        .shared_event_store(store)
        .build()
        .await
        .expect("build")
}

/// 16 sign-ups for one name, half through each of two instances sharing
/// `stores` (two handles on one database): exactly one registers, the
/// others are refused as taken; then names move between users and the
/// instances never disagree.
async fn unique_names_across_instances(stores: [Arc<dyn EventStore>; 2]) {
    let [a, b] = stores;
    let apps = [Arc::new(signup(a).await), Arc::new(signup(b).await)];
    let mut racers = Vec::new();
    for i in 0..16 {
        let app = Arc::clone(&apps[i % 2]);
        racers.push(tokio::spawn(async move {
            app.dispatch(Register {
                user: Ulid::new(),
                username: "grace".into(),
            })
            .await
        }));
    }
    let (mut won, mut taken) = (0, 0);
    for racer in racers {
        match racer.await.expect("join") {
            Ok(_) => won += 1,
            Err(CommandError::Domain(SignupError::Taken(name))) => {
                assert_eq!(name, "grace");
                taken += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((won, taken), (1, 15));

    // A name registered through one instance is taken in the other.
    let ada = Ulid::new();
    apps[0]
        .dispatch(Register {
            user: ada,
            username: "ada".into(),
        })
        .await
        .expect("register ada");
    let bob = Ulid::new();
    assert!(matches!(
        apps[1]
            .dispatch(Register {
                user: bob,
                username: "ada".into()
            })
            .await,
        Err(CommandError::Domain(SignupError::Taken(_)))
    ));
    apps[1]
        .dispatch(Register {
            user: bob,
            username: "bob".into(),
        })
        .await
        .expect("register bob");
    // A name given up is free again, in both instances.
    apps[0]
        .dispatch(ChangeUsername {
            user: ada,
            username: "countess".into(),
        })
        .await
        .expect("rename ada");
    apps[1]
        .dispatch(ChangeUsername {
            user: bob,
            username: "ada".into(),
        })
        .await
        .expect("bob takes the freed name");
    assert_eq!(
        apps[1].query(OwnerOf("ada".into())).await.expect("query"),
        Some(bob.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_names_on_memory() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    unique_names_across_instances([Arc::clone(&store), store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_names_on_sqlite() {
    let path = std::env::temp_dir().join(format!("interlock-scoped-{}.db", Ulid::new()));
    let open = || interlock_sql::SqliteStore::open(interlock_sql::SqliteConfig::file(&path));
    let (a, b) = (open().await.expect("open"), open().await.expect("open"));
    unique_names_across_instances([Arc::new(a), Arc::new(b)]).await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_names_on_postgres() {
    let Some(a) = services::postgres().await else { return };
    // A second pool on the same schema: another instance's connection.
    let b = interlock_sql::PostgresStore::open(a.config().clone())
        .await
        .expect("open");
    unique_names_across_instances([Arc::new(a), Arc::new(b)]).await;
}

/// An idempotent scoped command replays its recorded outcome.
#[tokio::test]
async fn a_scoped_command_is_idempotent() {
    let app = signup(Arc::new(MemoryEventStore::new())).await;
    let options = || DispatchOptions::new().command_id(interlock::CommandId::new());
    let first = options();
    let user = Ulid::new();
    let command = Register {
        user,
        username: "ada".into(),
    };
    let done = app
        .dispatch_with(command.clone(), first.clone())
        .await
        .expect("register");
    let again = app.dispatch_with(command, first).await.expect("replay");
    assert!(again.replayed, "{again:?} after {done:?}");
    assert_eq!((again.stream, again.version), (done.stream, done.version));
}

/// A scenario decides on the view the test folds.
#[test]
fn scenarios_decide_on_a_given_view() {
    let names = interlock::scenario::ProjectionScenario::new(Usernames::default())
        .from_stream(interlock::StreamId::new("signup.user", Ulid::new().to_string()))
        .given(UserRegistered { username: "ada".into() })
        .into_projection();
    let user = Ulid::new();
    AggregateScenario::<User>::new()
        .when_viewing(
            Register {
                user,
                username: "ada".into(),
            },
            &names,
        )
        .then_error(SignupError::Taken("ada".into()));
    AggregateScenario::<User>::new()
        .when_viewing(
            Register {
                user,
                username: "bob".into(),
            },
            &names,
        )
        .then_emits(UserRegistered { username: "bob".into() });
}

/// A ticket number, gapless across the whole log.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "tests.ticket_issued")]
struct TicketIssued {
    number: u64,
}

#[derive(Command, Clone, Debug)]
struct IssueTicket {
    #[aggregate_id]
    desk: u32,
}

/// The last ticket number issued anywhere.
#[derive(Default)]
struct LastTicket(u64);

#[projection(model = memory)]
impl LastTicket {
    #[handles_event]
    fn issued(&mut self, e: &TicketIssued) {
        self.0 = self.0.max(e.number);
    }
}

#[derive(Default)]
struct Desk;

#[aggregate(name = "tests.desk")]
impl Desk {
    #[handles_command(consistency = log)]
    fn issue(&self, _: IssueTicket, #[view] last: &LastTicket) -> Reply<u64, TicketIssued> {
        let number = last.0 + 1;
        Reply::new(number, TicketIssued { number })
    }

    #[applies_event]
    fn issued(&mut self, _: &TicketIssued) {}
}

/// 16 tasks on 4 desks through two instances issue tickets under
/// `consistency = log`: every number from 1 is issued exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_consistent_counter_has_no_gaps_or_duplicates() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let build = || async {
        Application::builder()
            .aggregate::<Desk>()
            .shared_event_store(Arc::clone(&store))
            .build()
            .await
            .expect("build")
    };
    let apps = [Arc::new(build().await), Arc::new(build().await)];
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let app = Arc::clone(&apps[(t % 2) as usize]);
        tasks.push(tokio::spawn(async move {
            let mut numbers = Vec::new();
            for _ in 0..10 {
                numbers.push(app.dispatch(IssueTicket { desk: t % 4 }).await.expect("issue"));
            }
            numbers
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=160).collect::<Vec<u64>>());
}

/// A store where another writer always gets into the category first.
struct Overtaken(MemoryEventStore);

impl Overtaken {
    fn intruder() -> NewEvent {
        NewEvent {
            event_id: EventId::new(),
            name: "signup.user_registered".into(),
            schema_version: SchemaVersion(1),
            payload: format!(r#"{{"username":"{}"}}"#, Ulid::new()).into_bytes().into(),
            metadata: interlock::store::EventMetadata::default(),
        }
    }
}

impl EventStore for Overtaken {
    fn append<'a>(
        &'a self,
        stream: &'a interlock::StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        self.0.append(stream, expected, events)
    }
    fn append_atomic(&self, append: AtomicAppend) -> BoxFuture<'_, Result<Vec<Committed>, StoreError>> {
        Box::pin(async move {
            let other = interlock::StreamId::new("signup.user", Ulid::new().to_string());
            self.0
                .append(&other, ExpectedVersion::Any, vec![Self::intruder()])
                .await?;
            self.0.append_atomic(append).await
        })
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a interlock::StreamId,
        from: interlock::Version,
        to: Option<interlock::Version>,
    ) -> BoxFuture<'a, Result<Vec<interlock::store::RecordedEvent>, StoreError>> {
        self.0.read_stream(stream, from, to)
    }
    fn read_all<'a>(
        &'a self,
        after: interlock::Position,
        limit: usize,
        filter: &'a interlock::store::EventFilter,
    ) -> BoxFuture<'a, Result<Vec<interlock::store::RecordedEvent>, StoreError>> {
        self.0.read_all(after, limit, filter)
    }
    fn stream_version<'a>(
        &'a self,
        stream: &'a interlock::StreamId,
    ) -> BoxFuture<'a, Result<interlock::Version, StoreError>> {
        self.0.stream_version(stream)
    }
    fn head(&self) -> BoxFuture<'_, Result<interlock::Position, StoreError>> {
        self.0.head()
    }
    fn scan<'a>(
        &'a self,
        scan: &'a interlock::store::Scan,
    ) -> BoxFuture<'a, Result<Vec<interlock::store::RecordedEvent>, StoreError>> {
        self.0.scan(scan)
    }
    fn rewrite(
        &self,
        position: interlock::Position,
        event: interlock::store::RewrittenEvent,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.0.rewrite(position, event)
    }
}

/// A category that changes before every append: the command is re-run
/// on each newer view until the attempts run out, then fails with the
/// scope, and nothing of it was appended.
#[tokio::test]
async fn a_scope_that_keeps_changing_fails_typed_after_the_attempts() {
    let store = Arc::new(Overtaken(MemoryEventStore::new()));
    let app = Application::builder()
        .aggregate::<User>()
        .shared_event_store(Arc::clone(&store) as Arc<dyn EventStore>)
        .max_attempts(3)
        .build()
        .await
        .expect("build");
    let user = Ulid::new();
    match app
        .dispatch(Register {
            user,
            username: "ada".into(),
        })
        .await
    {
        Err(CommandError::ScopeChanged {
            scope,
            since,
            actual,
            attempts,
        }) => {
            assert_eq!(scope, Scope::Category("signup.user".into()));
            assert!(actual > since);
            assert_eq!(attempts, 3);
        }
        other => panic!("expected ScopeChanged, got {other:?}"),
    }
    let stream = interlock::StreamId::new("signup.user", user.to_string());
    assert_eq!(
        store.stream_version(&stream).await.expect("version"),
        interlock::Version(0)
    );
    // Three attempts, three intruders: nothing else was written.
    assert_eq!(store.head().await.expect("head"), interlock::Position(3));
}

/// A stored event of the category the view cannot decode fails the
/// command with a typed error naming the view and the position; nothing
/// is appended and the stored event is untouched.
#[tokio::test]
async fn an_undecodable_event_in_the_scope_is_a_typed_error() {
    let store = Arc::new(MemoryEventStore::new());
    let mut bad = Overtaken::intruder();
    bad.payload = br#"{"username": 7}"#.to_vec().into();
    let other = interlock::StreamId::new("signup.user", "someone");
    store
        .append(&other, ExpectedVersion::Any, vec![bad])
        .await
        .expect("append");
    let app = signup(Arc::clone(&store) as Arc<dyn EventStore>).await;
    for _ in 0..2 {
        match app
            .dispatch(Register {
                user: Ulid::new(),
                username: "ada".into(),
            })
            .await
        {
            Err(CommandError::Load(LoadError::ViewDecode {
                view, event, position, ..
            })) => {
                assert!(view.ends_with("Usernames"), "{view}");
                assert_eq!(event, "signup.user_registered");
                assert_eq!(position, interlock::Position(1));
            }
            other => panic!("expected ViewDecode, got {other:?}"),
        }
    }
    assert_eq!(store.head().await.expect("head"), interlock::Position(1));
    let stored = store
        .read_stream(&other, interlock::Version(1), None)
        .await
        .expect("read");
    assert_eq!(&stored[0].payload[..], br#"{"username": 7}"#);
}

/// A rewritten event (schema migration through the application) is folded
/// anew: the views that held its old payload are rebuilt.
#[tokio::test]
async fn a_rewrite_rebuilds_the_views_that_folded_it() {
    let app = signup(Arc::new(MemoryEventStore::new())).await;
    let done = app
        .dispatch_with(
            Register {
                user: Ulid::new(),
                username: "ada".into(),
            },
            DispatchOptions::new(),
        )
        .await
        .expect("register");
    let position = done.positions[0];
    app.event_store()
        .rewrite(
            position,
            interlock::store::RewrittenEvent {
                name: "signup.user_registered".into(),
                schema_version: SchemaVersion(1),
                payload: br#"{"username":"eve"}"#.to_vec().into(),
            },
        )
        .await
        .expect("rewrite");
    // `ada` is free now, `eve` taken.
    app.dispatch(Register {
        user: Ulid::new(),
        username: "ada".into(),
    })
    .await
    .expect("ada is free after the rewrite");
    assert!(matches!(
        app.dispatch(Register {
            user: Ulid::new(),
            username: "eve".into()
        })
        .await,
        Err(CommandError::Domain(SignupError::Taken(_)))
    ));
}
