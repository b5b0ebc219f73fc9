//! Every read model can be dropped and rebuilt from the log: after random sequences of valid
//! commands, the rebuilt read models equal the live ones row for row.
mod common;

use std::time::Duration;

use domain::catalog::{CatalogCommand, CatalogDetails};
use domain::client_request::{ClientRequestCommand, Outcome};
use domain::metadata::{Actor, EventMetadata};
use domain::project::{CatalogFacts, ProjectCommand, UserFacts};
use domain::user::{Profile, UserCommand};
use domain::{Caller, Role};
use offerflow_http::state::AppState;
use proptest::prelude::*;
use serde_json::{json, Value};
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    RegisterUser(u8),
    UpdateProfile(u8, u8),
    SetActive(u8, bool),
    CreateProduct(u8),
    UpdateProduct(u8, u8),
    ArchiveProduct(u8),
    CreateChannel(u8),
    CreateProject(u8, u8, u8),
    RenameProject(u8, u8),
    AddMember(u8, u8, bool),
    ChangeRole(u8, u8, bool),
    RemoveMember(u8, u8),
    Attach(u8, u8),
    ChangePrompt(u8, u8, u8),
    Detach(u8, u8),
    ArchiveProject(u8),
    CreateRequest(u8, u8, u8),
    RecordOutcome(u8, u8, u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let i = || 0u8..4;
    prop_oneof![
        i().prop_map(Op::RegisterUser),
        (i(), any::<u8>()).prop_map(|(a, b)| Op::UpdateProfile(a, b)),
        (i(), any::<bool>()).prop_map(|(a, b)| Op::SetActive(a, b)),
        i().prop_map(Op::CreateProduct),
        (i(), any::<u8>()).prop_map(|(a, b)| Op::UpdateProduct(a, b)),
        i().prop_map(Op::ArchiveProduct),
        i().prop_map(Op::CreateChannel),
        (i(), i(), i()).prop_map(|(a, b, c)| Op::CreateProject(a, b, c)),
        (i(), any::<u8>()).prop_map(|(a, b)| Op::RenameProject(a, b)),
        (i(), i(), any::<bool>()).prop_map(|(a, b, c)| Op::AddMember(a, b, c)),
        (i(), i(), any::<bool>()).prop_map(|(a, b, c)| Op::ChangeRole(a, b, c)),
        (i(), i()).prop_map(|(a, b)| Op::RemoveMember(a, b)),
        (i(), i()).prop_map(|(a, b)| Op::Attach(a, b)),
        (i(), i(), any::<u8>()).prop_map(|(a, b, c)| Op::ChangePrompt(a, b, c)),
        (i(), i()).prop_map(|(a, b)| Op::Detach(a, b)),
        i().prop_map(Op::ArchiveProject),
        (i(), i(), 0u8..6).prop_map(|(a, b, c)| Op::CreateRequest(a, b, c)),
        (i(), i(), 0u8..6, 0u8..6).prop_map(|(a, b, c, d)| Op::RecordOutcome(a, b, c, d)),
    ]
}

/// Names the entities of one generated run, fresh per run so that runs share one database.
struct World {
    run: Uuid,
}

impl World {
    fn id(&self, kind: &str, n: u8) -> Uuid {
        Uuid::new_v5(&self.run, format!("{kind}:{n}").as_bytes())
    }

    fn user(&self, n: u8) -> Uuid {
        domain::ids::user_id(&self.email(n))
    }

    fn email(&self, n: u8) -> String {
        format!("user{n}.{}@bank.test", self.run.simple())
    }

    fn key(&self, kind: &str, n: u8) -> String {
        format!("{kind}{n}_{}", &self.run.simple().to_string()[..8]).to_uppercase()
    }

    fn caller(&self, n: u8) -> Caller {
        Caller {
            user_id: self.user(n),
            is_admin: n == 0,
        }
    }

    fn client(&self, n: u8) -> Vec<(String, Value)> {
        vec![
            ("age".into(), json!(20 + n)),
            ("super_clust".into(), json!(format!("cluster {}", n % 3))),
        ]
    }
}

async fn facts(state: &AppState, product: bool, id: Uuid) -> Option<CatalogFacts> {
    let entry = if product {
        state
            .bus
            .load::<domain::catalog::Product>(id)
            .await
            .ok()?
            .details
            .map(|d| (d, false))
    } else {
        state
            .bus
            .load::<domain::catalog::SalesChannel>(id)
            .await
            .ok()?
            .details
            .map(|d| (d, false))
    }?;
    Some(CatalogFacts {
        id,
        key: String::new(),
        description: entry.0.description,
        archived: entry.1,
    })
}

/// Runs one operation; domain rejections are part of a valid sequence and are ignored.
async fn run(state: &AppState, world: &World, op: &Op) {
    let meta = EventMetadata::new(Actor::Process("proptest".into()), "proptest");
    let admin = Caller {
        user_id: Uuid::nil(),
        is_admin: true,
    };
    let bus = &state.bus;
    let _ = match op.clone() {
        Op::RegisterUser(u) => {
            let command = UserCommand::Register {
                email: world.email(u),
                profile: Profile {
                    name: format!("User {u}"),
                    position: String::new(),
                    subdivision: String::new(),
                },
                is_admin: u == 0,
                by: admin,
            };
            bus.execute(&bus.users, world.user(u), command, &meta)
                .await
                .map(|_| ())
        }
        Op::UpdateProfile(u, v) => {
            let command = UserCommand::UpdateProfile {
                name: Some(format!("Name {v}")),
                position: None,
                subdivision: Some(format!("Dept {v}")),
                by: admin,
            };
            bus.execute(&bus.users, world.user(u), command, &meta)
                .await
                .map(|_| ())
        }
        Op::SetActive(u, active) => bus
            .execute(
                &bus.users,
                world.user(u),
                UserCommand::SetActive { active, by: admin },
                &meta,
            )
            .await
            .map(|_| ()),
        Op::CreateProduct(p) | Op::CreateChannel(p) => {
            let is_product = matches!(op, Op::CreateProduct(_));
            let kind = if is_product { "P" } else { "C" };
            let command = CatalogCommand::Create {
                key: world.key(kind, p),
                details: CatalogDetails {
                    name: format!("{kind} {p}"),
                    description: format!("Описание {kind}{p}"),
                    link: None,
                },
                by: admin,
            };
            let id = world.id(kind, p);
            if is_product {
                bus.execute(&bus.products, id, command, &meta)
                    .await
                    .map(|_| ())
            } else {
                bus.execute(&bus.channels, id, command, &meta)
                    .await
                    .map(|_| ())
            }
        }
        Op::UpdateProduct(p, v) => {
            let command = CatalogCommand::Update {
                name: None,
                description: Some(format!("Новое описание {v}")),
                link: Some(Some(format!("https://bank.test/{v}"))),
                by: admin,
            };
            bus.execute(&bus.products, world.id("P", p), command, &meta)
                .await
                .map(|_| ())
        }
        Op::ArchiveProduct(p) => bus
            .execute(
                &bus.products,
                world.id("P", p),
                CatalogCommand::Archive { by: admin },
                &meta,
            )
            .await
            .map(|_| ()),
        Op::CreateProject(pr, product, by) => {
            match facts(state, true, world.id("P", product)).await {
                Some(product) => {
                    let command = ProjectCommand::Create {
                        name: format!("Project {pr}"),
                        description: format!("Повод {pr}"),
                        product,
                        by: world.caller(by),
                    };
                    bus.execute(&bus.projects, world.id("J", pr), command, &meta)
                        .await
                        .map(|_| ())
                }
                None => Ok(()),
            }
        }
        Op::RenameProject(pr, v) => {
            let command = ProjectCommand::Update {
                name: Some(format!("Renamed {v}")),
                description: None,
                by: admin,
            };
            bus.execute(&bus.projects, world.id("J", pr), command, &meta)
                .await
                .map(|_| ())
        }
        Op::AddMember(pr, u, manager) => {
            let role = if manager {
                Role::Manager
            } else {
                Role::Performer
            };
            let command = ProjectCommand::AddMember {
                user: UserFacts {
                    user_id: world.user(u),
                    active: true,
                },
                role,
                by: admin,
            };
            bus.execute(&bus.projects, world.id("J", pr), command, &meta)
                .await
                .map(|_| ())
        }
        Op::ChangeRole(pr, u, manager) => {
            let role = if manager {
                Role::Manager
            } else {
                Role::Performer
            };
            bus.execute(
                &bus.projects,
                world.id("J", pr),
                ProjectCommand::ChangeMemberRole {
                    user_id: world.user(u),
                    role,
                    by: admin,
                },
                &meta,
            )
            .await
            .map(|_| ())
        }
        Op::RemoveMember(pr, u) => bus
            .execute(
                &bus.projects,
                world.id("J", pr),
                ProjectCommand::RemoveMember {
                    user_id: world.user(u),
                    by: admin,
                },
                &meta,
            )
            .await
            .map(|_| ()),
        Op::Attach(pr, c) => match (
            facts(state, true, world.id("P", 0)).await,
            facts(state, false, world.id("C", c)).await,
        ) {
            (Some(product), Some(channel)) => bus
                .execute(
                    &bus.projects,
                    world.id("J", pr),
                    ProjectCommand::AttachChannels {
                        channels: vec![channel],
                        product,
                        by: admin,
                    },
                    &meta,
                )
                .await
                .map(|_| ()),
            _ => Ok(()),
        },
        Op::ChangePrompt(pr, c, v) => {
            let command = ProjectCommand::ChangeChannelPrompt {
                channel_id: world.id("C", c),
                prompt: format!("Промпт {v}"),
                by: admin,
            };
            bus.execute(&bus.projects, world.id("J", pr), command, &meta)
                .await
                .map(|_| ())
        }
        Op::Detach(pr, c) => bus
            .execute(
                &bus.projects,
                world.id("J", pr),
                ProjectCommand::DetachChannel {
                    channel_id: world.id("C", c),
                    by: admin,
                },
                &meta,
            )
            .await
            .map(|_| ()),
        Op::ArchiveProject(pr) => bus
            .execute(
                &bus.projects,
                world.id("J", pr),
                ProjectCommand::Archive { by: admin },
                &meta,
            )
            .await
            .map(|_| ()),
        Op::CreateRequest(pr, c, n) => {
            let project_id = world.id("J", pr);
            let channel_id = world.id("C", c);
            let attached = bus
                .load::<domain::project::Project>(project_id)
                .await
                .map(|p| p.channel_attached(channel_id))
                .unwrap_or(false);
            let data = world.client(n);
            let id = domain::ids::client_request_id(project_id, channel_id, &data);
            let command = ClientRequestCommand::Create {
                project_id,
                channel_id,
                channel_attached: attached,
                client_id: Some(format!("client-{n}")),
                source: "proptest".into(),
                client_data: data,
                client_data_decoding: vec![
                    ("age".into(), "Возраст".into()),
                    ("super_clust".into(), "Кластер".into()),
                ],
            };
            bus.execute(&bus.requests, id, command, &meta)
                .await
                .map(|_| ())
        }
        Op::RecordOutcome(pr, c, n, o) => {
            let id = domain::ids::client_request_id(
                world.id("J", pr),
                world.id("C", c),
                &world.client(n),
            );
            let outcome = Outcome::ALL[o as usize % Outcome::ALL.len()];
            bus.execute(
                &bus.requests,
                id,
                ClientRequestCommand::RecordOutcome {
                    outcome,
                    credited_to: None,
                },
                &meta,
            )
            .await
            .map(|_| ())
        }
    };
}

/// Every row of every read model, in a stable order.
async fn snapshot(state: &AppState) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for projection in projections::all_projections() {
        for table in projection.tables() {
            let (rows,): (Value,) = sqlx::query_as(&format!(
                "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]'::jsonb) FROM {table} t"
            ))
            .fetch_one(&state.pool)
            .await
            .expect("snapshot");
            out.push((table.to_string(), rows));
        }
    }
    out
}

async fn caught_up(state: &AppState) {
    let last: Option<(String, i64)> =
        sqlx::query_as("SELECT transaction_id::text, global_position FROM events ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1")
            .fetch_optional(&state.pool)
            .await
            .expect("last");
    if let Some((tx, pos)) = last {
        let token = projections::ConsistencyToken {
            transaction_id: tx.parse().expect("xid"),
            global_position: pos,
        };
        assert!(state
            .engine
            .wait_for(token, Duration::from_secs(30))
            .await
            .expect("wait"));
    }
}

#[test]
fn rebuilt_read_models_equal_the_live_ones() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (state, stop) = runtime.block_on(async {
        let (_, pool) = common::fresh_database().await;
        let state = common::state_for(pool).await;
        let (stop, stopped) = watch::channel(false);
        // Live projections run in the background while the commands arrive.
        state.engine.spawn(stopped);
        (state, stop)
    });
    let config = ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in prop::collection::vec(op(), 1..60))| {
        runtime.block_on(async {
            let world = World { run: Uuid::new_v4() };
            // Every run starts with a few entities so that most later commands are accepted.
            for setup in [Op::RegisterUser(0), Op::RegisterUser(1), Op::CreateProduct(0), Op::CreateChannel(0), Op::CreateChannel(1), Op::CreateProject(0, 0, 0)] {
                run(&state, &world, &setup).await;
            }
            for op in &ops {
                run(&state, &world, op).await;
            }
            caught_up(&state).await;
            let live = snapshot(&state).await;
            for name in state.engine.names() {
                state.engine.rebuild(&name, |_| {}).await.expect("rebuild");
            }
            caught_up(&state).await;
            let rebuilt = snapshot(&state).await;
            for ((table, live_rows), (_, rebuilt_rows)) in live.iter().zip(rebuilt.iter()) {
                prop_assert_eq!(live_rows, rebuilt_rows, "table {} differs after a rebuild", table);
            }
            Ok(())
        })?;
    });
    let _ = stop.send(true);
}
