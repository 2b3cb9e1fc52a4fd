# Enclave in the R kernel, sourced before IRkernel starts.
#
# `enclave` is Enclave's Python library, through reticulate: enclave$datasets(),
# enclave$request_export(list("results/table.csv"), justification = "..."), and the rest.
# R has no Parquet reader here, so tables come through DuckDB (enclave.r_tables):
#   enclave_query("SELECT ... FROM person", omop = "ds-emr/omop")  # SQL over a project's OMOP
#   enclave_table("results/scores.parquet")                         # a Parquet or CSV file
# each a data.table with its columns' types kept (NULL as NA).

local({
    python <- Sys.getenv("ENCLAVE_PYTHON")
    if (nzchar(python)) reticulate::use_python(python, required = TRUE)
    # An environment's .pth files (editable installs) are read as a Python program would.
    reticulate::py_run_string(paste(
        "import site, sys",
        "for p in [p for p in sys.path if p.endswith('site-packages')]: site.addsitedir(p)",
        sep = "\n"
    ))
})
enclave <- reticulate::import("enclave")

.enclave_read <- function(...) {
    out <- tempfile(fileext = ".csv")
    on.exit(unlink(out))
    tables <- reticulate::import("enclave.r_tables")
    classes <- unlist(tables$table_for_r(out, ...))
    data.table::fread(out, colClasses = classes, na.strings = "\\N", encoding = "UTF-8")
}

enclave_query <- function(sql, omop = NULL) .enclave_read(query = sql, omop = omop)

enclave_table <- function(path) .enclave_read(path = path.expand(path))
