//! A fresh MariaDB database per test: `CREATE DATABASE vault_e2e_<random>`
//! through `VAULT_TEST_MYSQL_ADMIN_URL`, dropped when the value is dropped
//! (also when the test fails).

use sqlx::{AssertSqlSafe, Connection as _, MySqlConnection};

use crate::random_hex;

/// A database that exists for one test.
#[derive(Debug)]
pub struct TempDatabase {
    admin_url: String,
    name: String,
    url: String,
}

/// `url` with its path (database) replaced by `/db`; the query is kept.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("mysql", base));
    // The path starts at the first '/' after the credentials.
    let host_start = rest.rfind('@').map_or(0, |i| i + 1);
    let authority_end = rest[host_start..]
        .find('/')
        .map_or(rest.len(), |i| host_start + i);
    let mut out = format!("{scheme}://{}/{db}", &rest[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl TempDatabase {
    /// Creates `vault_e2e_<random>` on the server at `admin_url`.
    pub async fn create(admin_url: &str) -> Self {
        let name = format!("vault_e2e_{}", random_hex(8));
        let mut conn = MySqlConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to the test MariaDB at {}: {e}",
                    redact(admin_url)
                )
            });
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
        )))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
        Self {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// The database's URL (for `VAULT_DATABASE_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread with its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = MySqlConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: cannot drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            with_database("mysql://vault:pw@127.0.0.1:3307", "x"),
            "mysql://vault:pw@127.0.0.1:3307/x"
        );
        assert_eq!(
            with_database(
                "mysql://vault:p/w@127.0.0.1:3307/vault_test?ssl-mode=disabled",
                "x"
            ),
            "mysql://vault:p/w@127.0.0.1:3307/x?ssl-mode=disabled"
        );
        assert_eq!(
            with_database("mysql://127.0.0.1/", "x"),
            "mysql://127.0.0.1/x"
        );
        assert_eq!(
            redact("mysql://vault:secret@127.0.0.1:1"),
            "mysql://vault:***@127.0.0.1:1"
        );
    }
}
