//! The scenarios of the original report as gateway calls, and how their parameters vary:
//! different learners (most traffic from an active minority, the rest from anyone), emails,
//! course types, categories and pages, so a cache's hit rate is what such traffic earns.
use std::{future::Future, time::Duration};

use anyhow::Context;
use gateway::auth::{Role, issue_token};
use learnhub_proto::{
    catalog::v1::{CourseType, ListCategoriesRequest},
    enrollment::v1::EnrollmentStatus,
    gateway::v1::{
        GetCatalogPageRequest, GetUserRequest, ListMyEnrollmentsRequest,
        gateway_service_client::GatewayServiceClient, get_user_request::Key,
    },
};
use tonic::{Request, metadata::MetadataValue, transport::Channel};

use crate::platform::SECRET;

/// Page size of every catalog page asked for (the gateway's default).
pub const PAGE_SIZE: i32 = 20;
/// Pages followed per filter: first pages are most of the traffic, deeper ones the rest.
const PAGES: usize = 5;
/// Share of traffic to page 1, 2, 3, 4, 5 (percent).
const PAGE_WEIGHTS: [u32; PAGES] = [70, 15, 8, 4, 3];
/// Share of learner traffic from the active minority (percent), and that minority's size.
const HOT_TRAFFIC: u32 = 80;
const HOT_USERS_PER_MILLE: u64 = 10;

/// One measured scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    CatalogAnonymous,
    CatalogLearner,
    UserByEmail,
    Enrollments,
    Featured,
    Categories,
    /// Load benchmark: first pages only, anonymous.
    CatalogFirstPage,
}

impl Scenario {
    /// What `run` measures, in the order of the original report's table.
    pub const REPORT: [Scenario; 6] = [
        Scenario::CatalogAnonymous,
        Scenario::CatalogLearner,
        Scenario::UserByEmail,
        Scenario::Enrollments,
        Scenario::Featured,
        Scenario::Categories,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::CatalogAnonymous => "Catalog page (anonymous)",
            Self::CatalogLearner => "Catalog page (learner)",
            Self::UserByEmail => "User by email (admin)",
            Self::Enrollments => "Enrollment query (learner)",
            Self::Featured => "Featured courses",
            Self::Categories => "Category list",
            Self::CatalogFirstPage => "Catalog page (first pages)",
        }
    }

    /// Stable key in the JSON results.
    pub fn key(self) -> &'static str {
        match self {
            Self::CatalogAnonymous => "catalog_anonymous",
            Self::CatalogLearner => "catalog_learner",
            Self::UserByEmail => "user_by_email",
            Self::Enrollments => "enrollments",
            Self::Featured => "featured",
            Self::Categories => "categories",
            Self::CatalogFirstPage => "catalog_first_page",
        }
    }

    /// The call and how its parameters vary.
    pub fn describe(self) -> &'static str {
        match self {
            Self::CatalogAnonymous => {
                "GetCatalogPage, no token; 11 filters (all / python / sql / each of 8 categories) \
                 x pages 1-5 weighted 70/15/8/4/3 %, page_size 20"
            }
            Self::CatalogLearner => {
                "GetCatalogPage with a learner token (the page then carries the learner's \
                 enrollment state); filters and pages as above; learners as below"
            }
            Self::UserByEmail => {
                "GetUser by email with an admin token; any of the seeded learners, uniformly; \
                 1 in 5 emails in mixed case"
            }
            Self::Enrollments => {
                "ListMyEnrollments with a learner token; status any/active/completed 70/20/10 %; \
                 80 % of calls from an active 1 % of learners, 20 % from any learner"
            }
            Self::Featured => {
                "GetCatalogPage with page_size 1, no token, type all/python/sql: the summary \
                 (featured per type, counts, categories) is the whole cost"
            }
            Self::Categories => "ListCategories (categories with course counts)",
            Self::CatalogFirstPage => {
                "GetCatalogPage (gRPC) or GET /v1/catalog (REST), no token, first page of one \
                 of the 11 filters"
            }
        }
    }
}

/// One filter of the catalog page and the tokens of its pages (page 1's is empty).
#[derive(Debug, Clone)]
pub struct Filter {
    pub course_type: CourseType,
    pub category: String,
    pub tokens: Vec<String>,
}

impl Filter {
    /// The REST query string of page `page` (0-based).
    pub fn rest_query(&self, page: usize) -> String {
        let mut query = format!("page_size={PAGE_SIZE}");
        match self.course_type {
            CourseType::Python => query.push_str("&type=python"),
            CourseType::Sql => query.push_str("&type=sql"),
            CourseType::Unspecified => {}
        }
        if !self.category.is_empty() {
            query.push_str(&format!("&category={}", self.category));
        }
        if let Some(token) = self.tokens.get(page).filter(|t| !t.is_empty()) {
            query.push_str(&format!("&page_token={token}"));
        }
        query
    }
}

/// Everything a request generator draws from.
pub struct Workload {
    clients: Vec<GatewayServiceClient<Channel>>,
    pub filters: Vec<Filter>,
    /// Learner ids: `min..=max`, and the active minority.
    min_user: i64,
    max_user: i64,
    hot: Vec<i64>,
    /// `learner{1..=emails}@example.com` exist.
    emails: u64,
    admin: MetadataValue<tonic::metadata::Ascii>,
}

pub type Call = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

impl Workload {
    /// Connects `connections` HTTP/2 connections to the gateway and reads the filters and page
    /// tokens through it (untimed).
    pub async fn discover(
        gateway_url: &str,
        connections: usize,
        users: (i64, i64),
        emails: u64,
    ) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for _ in 0..connections.max(1) {
            let channel = Channel::from_shared(gateway_url.to_owned())?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to the gateway at {gateway_url}"))?;
            clients.push(GatewayServiceClient::new(channel));
        }
        let mut client = clients[0].clone();
        let categories = client
            .list_categories(ListCategoriesRequest {})
            .await
            .context("ListCategories")?
            .into_inner()
            .categories;
        let mut filters: Vec<Filter> =
            [CourseType::Unspecified, CourseType::Python, CourseType::Sql]
                .into_iter()
                .map(|course_type| Filter {
                    course_type,
                    category: String::new(),
                    tokens: Vec::new(),
                })
                .collect();
        filters.extend(categories.into_iter().map(|c| Filter {
            course_type: CourseType::Unspecified,
            category: c.slug,
            tokens: Vec::new(),
        }));
        for filter in &mut filters {
            let mut token = String::new();
            for _ in 0..PAGES {
                filter.tokens.push(token.clone());
                let page = client
                    .get_catalog_page(GetCatalogPageRequest {
                        course_type: filter.course_type.into(),
                        category: filter.category.clone(),
                        page_size: PAGE_SIZE,
                        page_token: token,
                    })
                    .await
                    .context("GetCatalogPage")?
                    .into_inner();
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
        }
        let (min_user, max_user) = users;
        anyhow::ensure!(
            max_user >= min_user && min_user > 0,
            "the enrollment database has no user"
        );
        let span = (max_user - min_user + 1) as u64;
        let hot_count = (span * HOT_USERS_PER_MILLE / 1_000).clamp(1, span) as usize;
        let mut rng = fastrand::Rng::with_seed(0x0068_6f74);
        let hot = (0..hot_count)
            .map(|_| rng.i64(min_user..=max_user))
            .collect();
        let admin = bearer(&token_for("0", Role::Admin)?)?;
        Ok(Self {
            clients,
            filters,
            min_user,
            max_user,
            hot,
            emails,
            admin,
        })
    }

    /// Distinct catalog pages the filters reach (cacheable keys: first pages only).
    pub fn distinct_pages(&self) -> usize {
        self.filters.iter().map(|f| f.tokens.len()).sum()
    }

    pub fn hot_users(&self) -> usize {
        self.hot.len()
    }

    pub fn pick_filter(&self, rng: &mut fastrand::Rng) -> &Filter {
        &self.filters[rng.usize(..self.filters.len())]
    }

    /// A page index (0-based) of `filter`, weighted toward the first.
    pub fn pick_page(&self, rng: &mut fastrand::Rng, filter: &Filter) -> usize {
        let mut roll = rng.u32(..100);
        let mut page = 0;
        for (index, weight) in PAGE_WEIGHTS.iter().enumerate() {
            if roll < *weight {
                page = index;
                break;
            }
            roll -= weight;
        }
        page.min(filter.tokens.len().saturating_sub(1))
    }

    fn pick_learner(&self, rng: &mut fastrand::Rng) -> i64 {
        if rng.u32(..100) < HOT_TRAFFIC {
            self.hot[rng.usize(..self.hot.len())]
        } else {
            rng.i64(self.min_user..=self.max_user)
        }
    }

    fn client(&self, rng: &mut fastrand::Rng) -> GatewayServiceClient<Channel> {
        self.clients[rng.usize(..self.clients.len())].clone()
    }

    /// One request of `scenario`, built now (untimed) and sent when awaited (timed).
    pub fn call(&self, scenario: Scenario, rng: &mut fastrand::Rng) -> Call {
        let mut client = self.client(rng);
        match scenario {
            Scenario::CatalogAnonymous | Scenario::CatalogLearner | Scenario::CatalogFirstPage => {
                let filter = self.pick_filter(rng);
                let page = match scenario {
                    Scenario::CatalogFirstPage => 0,
                    _ => self.pick_page(rng, filter),
                };
                let mut request = Request::new(GetCatalogPageRequest {
                    course_type: filter.course_type.into(),
                    category: filter.category.clone(),
                    page_size: PAGE_SIZE,
                    page_token: filter.tokens[page].clone(),
                });
                if scenario == Scenario::CatalogLearner {
                    let learner = self.pick_learner(rng);
                    if let Err(err) = authorize(&mut request, learner) {
                        return Box::pin(async move { Err(err) });
                    }
                }
                Box::pin(async move {
                    client
                        .get_catalog_page(request)
                        .await
                        .map(drop)
                        .map_err(status)
                })
            }
            Scenario::UserByEmail => {
                let i = rng.u64(1..=self.emails);
                let email = if rng.u32(..5) == 0 {
                    format!("Learner{i}@Example.COM")
                } else {
                    format!("learner{i}@example.com")
                };
                let mut request = Request::new(GetUserRequest {
                    key: Some(Key::Email(email)),
                });
                request
                    .metadata_mut()
                    .insert("authorization", self.admin.clone());
                Box::pin(async move { client.get_user(request).await.map(drop).map_err(status) })
            }
            Scenario::Enrollments => {
                let status_filter = match rng.u32(..10) {
                    0..7 => EnrollmentStatus::Unspecified,
                    7..9 => EnrollmentStatus::Active,
                    _ => EnrollmentStatus::Completed,
                };
                let mut request = Request::new(ListMyEnrollmentsRequest {
                    status: status_filter.into(),
                    page_size: 0,
                    page_token: String::new(),
                });
                if let Err(err) = authorize(&mut request, self.pick_learner(rng)) {
                    return Box::pin(async move { Err(err) });
                }
                Box::pin(async move {
                    client
                        .list_my_enrollments(request)
                        .await
                        .map(drop)
                        .map_err(status)
                })
            }
            Scenario::Featured => {
                let course_type =
                    [CourseType::Unspecified, CourseType::Python, CourseType::Sql][rng.usize(..3)];
                let request = GetCatalogPageRequest {
                    course_type: course_type.into(),
                    category: String::new(),
                    page_size: 1,
                    page_token: String::new(),
                };
                Box::pin(async move {
                    client
                        .get_catalog_page(request)
                        .await
                        .map(drop)
                        .map_err(status)
                })
            }
            Scenario::Categories => Box::pin(async move {
                client
                    .list_categories(ListCategoriesRequest {})
                    .await
                    .map(drop)
                    .map_err(status)
            }),
        }
    }
}

fn token_for(subject: &str, role: Role) -> anyhow::Result<String> {
    issue_token(SECRET, subject, role, Duration::from_secs(6 * 3600))
        .map_err(|err| anyhow::anyhow!("issuing a token: {err}"))
}

fn bearer(token: &str) -> anyhow::Result<MetadataValue<tonic::metadata::Ascii>> {
    Ok(format!("Bearer {token}").parse()?)
}

fn authorize<T>(request: &mut Request<T>, learner: i64) -> Result<(), String> {
    let token = token_for(&learner.to_string(), Role::Learner).map_err(|e| e.to_string())?;
    let value = bearer(&token).map_err(|e| e.to_string())?;
    request.metadata_mut().insert("authorization", value);
    Ok(())
}

fn status(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_queries_carry_the_filter_and_page() {
        let filter = Filter {
            course_type: CourseType::Python,
            category: "data-analysis".into(),
            tokens: vec![String::new(), "abc".into()],
        };
        assert_eq!(
            filter.rest_query(0),
            "page_size=20&type=python&category=data-analysis"
        );
        assert_eq!(
            filter.rest_query(1),
            "page_size=20&type=python&category=data-analysis&page_token=abc"
        );
    }

    #[test]
    fn page_weights_cover_every_roll() {
        assert_eq!(PAGE_WEIGHTS.iter().sum::<u32>(), 100);
    }
}
