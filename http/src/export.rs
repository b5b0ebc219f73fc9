//! Tables as files for spreadsheets: CSV (UTF-8 with a BOM, so Excel reads Cyrillic right; one
//! section per table, separated by an empty line) and XLSX (one sheet per table).
use anyhow::Context;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiResult};

/// One value of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Int(i64),
    Float(f64),
}

impl From<String> for Cell {
    fn from(value: String) -> Self {
        Cell::Text(value)
    }
}

impl From<&str> for Cell {
    fn from(value: &str) -> Self {
        Cell::Text(value.to_string())
    }
}

impl From<i64> for Cell {
    fn from(value: i64) -> Self {
        Cell::Int(value)
    }
}

impl From<f64> for Cell {
    fn from(value: f64) -> Self {
        Cell::Float(value)
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(value: Option<T>) -> Self {
        value.map_or(Cell::Empty, Into::into)
    }
}

/// A named table: a figure of the statistics, or a list of requests.
pub struct Table {
    /// Also the XLSX sheet's name: at most 31 characters, none of `[]:*?/\`.
    pub name: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// What a list or a figure can be downloaded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Xlsx,
}

impl Format {
    /// Reads the `format` query parameter; absent means JSON.
    pub fn parse(value: Option<&str>) -> ApiResult<Format> {
        match value {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some("xlsx") => Ok(Format::Xlsx),
            Some(_) => Err(ApiError::bad_request(
                "format",
                "format: one of json, csv, xlsx",
            )),
        }
    }
}

fn csv_field(out: &mut String, cell: &Cell) {
    let text = match cell {
        Cell::Empty => return,
        Cell::Text(text) => text.clone(),
        Cell::Int(n) => n.to_string(),
        Cell::Float(x) => x.to_string(),
    };
    if text.contains([',', '"', '\n', '\r', ';']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&text);
    }
}

fn csv_line(out: &mut String, cells: &[Cell]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, cell);
    }
    out.push_str("\r\n");
}

/// The tables as CSV. With several tables, each section starts with a line holding the table's
/// name alone, and sections are separated by an empty line.
pub fn csv(tables: &[Table]) -> String {
    let mut out = String::from('\u{feff}');
    let named = tables.len() > 1;
    for (i, table) in tables.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        if named {
            csv_line(&mut out, &[Cell::Text(table.name.clone())]);
        }
        let headers: Vec<Cell> = table.headers.iter().map(|h| h.as_str().into()).collect();
        csv_line(&mut out, &headers);
        for row in &table.rows {
            csv_line(&mut out, row);
        }
    }
    out
}

/// The tables as an XLSX workbook, one sheet each.
pub fn xlsx(tables: &[Table]) -> anyhow::Result<Vec<u8>> {
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let bold = rust_xlsxwriter::Format::new().set_bold();
    for table in tables {
        let sheet = workbook.add_worksheet();
        sheet
            .set_name(&table.name)
            .with_context(|| format!("naming the sheet {}", table.name))?;
        for (column, header) in table.headers.iter().enumerate() {
            sheet.write_string_with_format(0, column as u16, header, &bold)?;
        }
        for (r, row) in table.rows.iter().enumerate() {
            let r = r as u32 + 1;
            for (column, cell) in row.iter().enumerate() {
                let column = column as u16;
                match cell {
                    Cell::Empty => {}
                    Cell::Text(text) => {
                        sheet.write_string(r, column, text)?;
                    }
                    Cell::Int(n) => {
                        sheet.write_number(r, column, *n as f64)?;
                    }
                    Cell::Float(x) => {
                        sheet.write_number(r, column, *x)?;
                    }
                }
            }
        }
    }
    workbook
        .save_to_buffer()
        .context("writing the XLSX workbook")
}

/// The tables as a download named `stem.csv` or `stem.xlsx`.
pub fn download(format: Format, stem: &str, tables: &[Table]) -> ApiResult<Response> {
    let (content_type, body, extension) = match format {
        Format::Csv => ("text/csv; charset=utf-8", csv(tables).into_bytes(), "csv"),
        Format::Xlsx => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            xlsx(tables)?,
            "xlsx",
        ),
        Format::Json => {
            return Err(anyhow::anyhow!("JSON is not a download format").into());
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{stem}.{extension}\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_would_split_a_field() {
        let table = Table {
            name: "t".into(),
            headers: vec!["a".into(), "b".into()],
            rows: vec![vec![Cell::Text("Привет, \"мир\"".into()), Cell::Int(3)]],
        };
        assert_eq!(
            csv(&[table]),
            "\u{feff}a,b\r\n\"Привет, \"\"мир\"\"\",3\r\n"
        );
    }
}
