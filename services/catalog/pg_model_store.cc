#include "services/catalog/pg_model_store.h"

#include <pqxx/pqxx>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/api/etag.h"
#include "common/api/time.h"
#include "common/db/migrations.h"
#include "common/status/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "hangar/migrations/catalog.h"
#include "nlohmann/json.hpp"

namespace hangar::catalog {
namespace {

using ::nlohmann::json;

// The columns every model query reads, in the order RowToModel expects.
constexpr char kModelColumns[] = R"sql(
  name, display_name, description, source, state, failure_reason, family,
  architecture, parameter_count, context_length, license, default_dtype,
  weight_sizes::text, supported_recipes::text, array_to_json(tags)::text,
  runs_on_cpu, hf_repo, revision, resolved_revision, connection, local_path,
  preparation_state, preparation_done, preparation_total, preparation_message,
  preparation_path, preparation_sha256, preparation_failure, version,
  (extract(epoch FROM create_time) * 1000000)::bigint,
  (extract(epoch FROM update_time) * 1000000)::bigint,
  preparation_retry_attempt, preparation_next_retry_us,
  preparation_last_error)sql";

// The metadata columns written by inserts and updates, $1..$21 in this order.
constexpr char kMetadataColumns[] = R"sql(
  name, display_name, description, source, state, failure_reason, family,
  architecture, parameter_count, context_length, license, default_dtype,
  weight_sizes, supported_recipes, tags, runs_on_cpu, hf_repo, revision,
  resolved_revision, connection, local_path)sql";
constexpr char kMetadataValues[] = R"sql(
  $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14::jsonb,
  ARRAY(SELECT jsonb_array_elements_text($15::jsonb)), $16, $17, $18, $19,
  $20, $21)sql";

std::string WeightSizesJson(const v1::Model& model) {
  json list = json::array();
  for (const v1::WeightSize& size : model.weight_sizes()) {
    list.push_back({{"dtype", size.dtype()}, {"bytes", size.bytes()}});
  }
  return list.dump();
}

std::string RecipesJson(const v1::Model& model) {
  json list = json::array();
  for (const v1::RecipeSupport& support : model.supported_recipes()) {
    list.push_back({{"engine", v1::Engine_Name(support.recipe().engine())},
                    {"quantization",
                     v1::Quantization_Name(support.recipe().quantization())},
                    {"min_gpu_memory_bytes", support.min_gpu_memory_bytes()}});
  }
  return list.dump();
}

std::string TagsJson(const v1::Model& model) {
  json list = json::array();
  for (const std::string& tag : model.tags()) list.push_back(tag);
  return list.dump();
}

v1::Model RowToModel(const pqxx::row& row) {
  v1::Model model;
  int i = 0;
  model.set_name(row[i++].as<std::string>());
  model.set_display_name(row[i++].as<std::string>());
  model.set_description(row[i++].as<std::string>());
  model.set_source(static_cast<v1::ModelSource>(row[i++].as<int>()));
  model.set_state(static_cast<v1::ModelState>(row[i++].as<int>()));
  model.set_failure_reason(row[i++].as<std::string>());
  model.set_family(row[i++].as<std::string>());
  model.set_architecture(row[i++].as<std::string>());
  model.set_parameter_count(row[i++].as<int64_t>());
  model.set_context_length(row[i++].as<int32_t>());
  model.set_license(row[i++].as<std::string>());
  model.set_default_dtype(row[i++].as<std::string>());
  for (const json& size : json::parse(row[i++].as<std::string>())) {
    v1::WeightSize* out = model.add_weight_sizes();
    out->set_dtype(size.value("dtype", ""));
    out->set_bytes(size.value("bytes", int64_t{0}));
  }
  for (const json& support : json::parse(row[i++].as<std::string>())) {
    v1::RecipeSupport* out = model.add_supported_recipes();
    v1::Engine engine = v1::ENGINE_UNSPECIFIED;
    v1::Quantization quantization = v1::QUANTIZATION_UNSPECIFIED;
    v1::Engine_Parse(support.value("engine", ""), &engine);
    v1::Quantization_Parse(support.value("quantization", ""), &quantization);
    out->mutable_recipe()->set_engine(engine);
    out->mutable_recipe()->set_quantization(quantization);
    out->set_min_gpu_memory_bytes(
        support.value("min_gpu_memory_bytes", int64_t{0}));
  }
  for (const json& tag : json::parse(row[i++].as<std::string>())) {
    model.add_tags(tag.get<std::string>());
  }
  model.set_runs_on_cpu(row[i++].as<bool>());
  model.set_hf_repo(row[i++].as<std::string>());
  model.set_revision(row[i++].as<std::string>());
  model.set_resolved_revision(row[i++].as<std::string>());
  model.set_connection(row[i++].as<std::string>());
  model.set_local_path(row[i++].as<std::string>());
  v1::Preparation* preparation = model.mutable_preparation();
  preparation->set_state(static_cast<v1::PreparationState>(row[i++].as<int>()));
  preparation->mutable_progress()->set_done(row[i++].as<int64_t>());
  preparation->mutable_progress()->set_total(row[i++].as<int64_t>());
  preparation->mutable_progress()->set_message(row[i++].as<std::string>());
  preparation->set_local_path(row[i++].as<std::string>());
  preparation->set_sha256(row[i++].as<std::string>());
  preparation->set_failure_reason(row[i++].as<std::string>());
  model.set_etag(MakeEtag(row[i++].as<int64_t>()));
  *model.mutable_create_time() =
      ToProtoTimestamp(absl::FromUnixMicros(row[i++].as<int64_t>()));
  *model.mutable_update_time() =
      ToProtoTimestamp(absl::FromUnixMicros(row[i++].as<int64_t>()));
  preparation->set_retry_attempt(row[i++].as<int32_t>());
  if (const int64_t next = row[i++].as<int64_t>(); next > 0) {
    *preparation->mutable_next_retry_time() =
        ToProtoTimestamp(absl::FromUnixMicros(next));
  }
  preparation->set_last_error(row[i++].as<std::string>());
  return model;
}

// Runs `sql` with the 21 metadata parameters of `model` followed by `extra`.
template <typename... Extra>
pqxx::result ExecWithMetadata(pqxx::work& tx, const std::string& sql,
                              const v1::Model& model, Extra&&... extra) {
  return tx.exec_params(
      sql, model.name(), model.display_name(), model.description(),
      static_cast<int>(model.source()), static_cast<int>(model.state()),
      model.failure_reason(), model.family(), model.architecture(),
      model.parameter_count(), model.context_length(), model.license(),
      model.default_dtype(), WeightSizesJson(model), RecipesJson(model),
      TagsJson(model), model.runs_on_cpu(), model.hf_repo(), model.revision(),
      model.resolved_revision(), model.connection(), model.local_path(),
      std::forward<Extra>(extra)...);
}

absl::StatusOr<v1::Model> SelectModel(pqxx::work& tx, const std::string& name,
                                      bool for_update) {
  pqxx::result rows =
      tx.exec_params(absl::StrCat("SELECT ", kModelColumns,
                                  " FROM catalog.models WHERE name = $1 AND "
                                  "NOT deleting",
                                  for_update ? " FOR UPDATE" : ""),
                     name);
  if (rows.empty()) {
    return absl::NotFoundError(absl::StrCat("model \"", name, "\" not found"));
  }
  return RowToModel(rows[0]);
}

// The WHERE clause of ListModels over parameters $1..$7 (see ModelFilter);
// a disabled filter passes its zero value.
constexpr char kFilterClause[] = R"sql(
  NOT deleting
  AND ($1::int = 0 OR source = $1::int)
  AND ($2::text = '' OR family = $2::text)
  AND ($3::text = '' OR $3::text = ANY (tags))
  AND ($4::text = '' OR strpos(lower(name || ' ' || display_name || ' ' ||
                                     description), lower($4::text)) > 0)
  AND (($5::text = '' AND $6::bigint = 0) OR EXISTS (
        SELECT 1 FROM jsonb_array_elements(supported_recipes) AS r
        WHERE ($5::text = '' OR r->>'engine' = $5::text)
          AND ($6::bigint = 0
               OR (r->>'min_gpu_memory_bytes')::bigint <= $6::bigint)))
  AND (NOT $7::boolean OR runs_on_cpu))sql";

}  // namespace

absl::Status MigrateCatalogSchema(db::Pool& pool) {
  return db::ApplyMigrations(pool, migrations::catalog::kSchema,
                             migrations::catalog::Migrations());
}

absl::Status PgModelStore::UpsertCurated(const std::vector<v1::Model>& models) {
  const std::string insert =
      absl::StrCat("INSERT INTO catalog.models (", kMetadataColumns,
                   ") VALUES (", kMetadataValues, ")");
  const std::string update = absl::StrCat(
      "UPDATE catalog.models SET (", kMetadataColumns, ") = (", kMetadataValues,
      "), version = version + 1, update_time = now() WHERE name = $22");
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    for (const v1::Model& curated : models) {
      pqxx::result rows = tx.exec_params(
          absl::StrCat("SELECT ", kModelColumns,
                       ", array_to_json(user_edited)::text, deleting FROM "
                       "catalog.models WHERE name = $1 FOR UPDATE"),
          curated.name());
      if (rows.empty()) {
        ExecWithMetadata(tx, insert, curated);
        continue;
      }
      const v1::Model current = RowToModel(rows[0]);
      const int extra = rows[0].size() - 2;
      std::vector<std::string> edited;
      for (const json& field : json::parse(rows[0][extra].as<std::string>())) {
        edited.push_back(field.get<std::string>());
      }
      if (current.source() != v1::MODEL_SOURCE_CURATED ||
          rows[0][extra + 1].as<bool>()) {
        continue;  // An import took the name; never overwrite it.
      }
      v1::Model merged = MergeCurated(current, curated, edited);
      if (google::protobuf::util::MessageDifferencer::Equals(merged, current)) {
        continue;
      }
      ExecWithMetadata(tx, update, merged, curated.name());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::Model> PgModelStore::CreateModel(const v1::Model& model) {
  const std::string sql =
      absl::StrCat("INSERT INTO catalog.models (", kMetadataColumns,
                   ", preparation_state) VALUES (", kMetadataValues,
                   ", $22) ON CONFLICT (name) DO NOTHING RETURNING name");
  return pool_->Transact<v1::Model>(
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Model> {
        pqxx::result inserted = ExecWithMetadata(
            tx, sql, model, static_cast<int>(model.preparation().state()));
        if (inserted.empty()) {
          return absl::AlreadyExistsError(absl::StrCat(
              "name: model \"", model.name(), "\" already exists"));
        }
        return SelectModel(tx, model.name(), /*for_update=*/false);
      });
}

absl::StatusOr<v1::Model> PgModelStore::GetModel(const std::string& name) {
  return pool_->Transact<v1::Model>(
      [&](pqxx::work& tx) { return SelectModel(tx, name, false); },
      {.read_only = true});
}

absl::StatusOr<ModelPage> PgModelStore::ListModels(
    const ModelFilter& filter, const std::string& after_name, int limit) {
  const std::string engine = filter.supports_engine == v1::ENGINE_UNSPECIFIED
                                 ? ""
                                 : v1::Engine_Name(filter.supports_engine);
  return pool_->Transact<ModelPage>(
      [&](pqxx::work& tx) -> absl::StatusOr<ModelPage> {
        ModelPage page;
        pqxx::result rows = tx.exec_params(
            absl::StrCat("SELECT ", kModelColumns,
                         " FROM catalog.models WHERE ", kFilterClause,
                         " AND name > $8::text ORDER BY name LIMIT $9::int"),
            static_cast<int>(filter.source), filter.family, filter.tag,
            filter.query, engine, filter.fits_gpu_memory_bytes,
            filter.runs_on_cpu, after_name, limit + 1);
        for (const pqxx::row& row : rows) {
          if (static_cast<int>(page.models.size()) == limit) {
            page.more = true;
            break;
          }
          page.models.push_back(RowToModel(row));
        }
        page.total =
            tx.exec_params(
                  absl::StrCat("SELECT count(*) FROM catalog.models WHERE ",
                               kFilterClause),
                  static_cast<int>(filter.source), filter.family, filter.tag,
                  filter.query, engine, filter.fits_gpu_memory_bytes,
                  filter.runs_on_cpu)[0][0]
                .as<int64_t>();
        return page;
      },
      {.isolation = db::Isolation::kRepeatableRead, .read_only = true});
}

absl::StatusOr<std::vector<std::string>> PgModelStore::ListNamesInState(
    v1::ModelState state) {
  return pool_->Transact<std::vector<std::string>>(
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<std::string>> {
        std::vector<std::string> names;
        for (const pqxx::row& row : tx.exec_params(
                 "SELECT name FROM catalog.models WHERE state = $1 AND "
                 "NOT deleting ORDER BY name",
                 static_cast<int>(state))) {
          names.push_back(row[0].as<std::string>());
        }
        return names;
      },
      {.read_only = true});
}

absl::StatusOr<std::vector<std::string>> PgModelStore::ListNamesPreparing(
    v1::PreparationState state) {
  return pool_->Transact<std::vector<std::string>>(
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<std::string>> {
        std::vector<std::string> names;
        for (const pqxx::row& row : tx.exec_params(
                 "SELECT name FROM catalog.models WHERE preparation_state = $1 "
                 "AND NOT deleting ORDER BY name",
                 static_cast<int>(state))) {
          names.push_back(row[0].as<std::string>());
        }
        return names;
      },
      {.read_only = true});
}

absl::StatusOr<v1::Model> PgModelStore::UpdateModel(
    const std::string& name,
    const std::function<absl::Status(v1::Model&)>& mutate,
    const std::vector<std::string>& user_edited) {
  const std::string sql = absl::StrCat(
      "UPDATE catalog.models SET (", kMetadataColumns, ") = (",
      // A row constructor cannot hold ARRAY(SELECT ...) with jsonb casts
      // differently from VALUES, so reuse the same expressions.
      kMetadataValues,
      "), version = version + 1, update_time = now() WHERE name = $22");
  return pool_->Transact<v1::Model>(
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Model> {
        ASSIGN_OR_RETURN(v1::Model model, SelectModel(tx, name, true));
        RETURN_IF_ERROR(mutate(model));
        model.set_name(name);  // The key never changes.
        ExecWithMetadata(tx, sql, model, name);
        if (!user_edited.empty()) {
          json fields = user_edited;
          tx.exec_params(
              "UPDATE catalog.models SET user_edited = ARRAY(SELECT DISTINCT "
              "unnest(user_edited || ARRAY(SELECT "
              "jsonb_array_elements_text($2::jsonb))) ORDER BY 1) WHERE name "
              "= $1",
              name, fields.dump());
        }
        return SelectModel(tx, name, false);
      });
}

absl::Status PgModelStore::SetPreparation(const std::string& name,
                                          const v1::Preparation& preparation) {
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    pqxx::result updated = tx.exec_params(
        R"sql(UPDATE catalog.models SET preparation_state = $2,
              preparation_done = $3, preparation_total = $4,
              preparation_message = $5, preparation_path = $6,
              preparation_sha256 = $7, preparation_failure = $8,
              preparation_retry_attempt = $9, preparation_next_retry_us = $10,
              preparation_last_error = $11
              WHERE name = $1 RETURNING name)sql",
        name, static_cast<int>(preparation.state()),
        preparation.progress().done(), preparation.progress().total(),
        preparation.progress().message(), preparation.local_path(),
        preparation.sha256(), preparation.failure_reason(),
        preparation.retry_attempt(),
        preparation.has_next_retry_time()
            ? absl::ToUnixMicros(
                  FromProtoTimestamp(preparation.next_retry_time()))
            : int64_t{0},
        preparation.last_error());
    if (updated.empty()) {
      return absl::NotFoundError(
          absl::StrCat("model \"", name, "\" not found"));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::Model> PgModelStore::MarkDeleting(
    const std::string& name,
    const std::function<absl::Status(const v1::Model&)>& check) {
  return pool_->Transact<v1::Model>(
      [&](pqxx::work& tx) -> absl::StatusOr<v1::Model> {
        ASSIGN_OR_RETURN(v1::Model model, SelectModel(tx, name, true));
        RETURN_IF_ERROR(check(model));
        tx.exec_params(
            "UPDATE catalog.models SET deleting = true WHERE name = $1", name);
        return model;
      });
}

absl::Status PgModelStore::FinishDelete(const std::string& name) {
  return pool_->Transact([&](pqxx::work& tx) -> absl::Status {
    pqxx::result deleted = tx.exec_params(
        "DELETE FROM catalog.models WHERE name = $1 AND deleting RETURNING "
        "name",
        name);
    if (deleted.empty()) {
      return absl::NotFoundError(
          absl::StrCat("model \"", name, "\" is not being deleted"));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<std::string>> PgModelStore::ListNamesDeleting() {
  return pool_->Transact<std::vector<std::string>>(
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<std::string>> {
        std::vector<std::string> names;
        for (const pqxx::row& row :
             tx.exec("SELECT name FROM catalog.models WHERE deleting ORDER BY "
                     "name")) {
          names.push_back(row[0].as<std::string>());
        }
        return names;
      },
      {.read_only = true});
}

absl::StatusOr<std::vector<StoredPath>> PgModelStore::ListPreparationPaths() {
  return pool_->Transact<std::vector<StoredPath>>(
      [&](pqxx::work& tx) -> absl::StatusOr<std::vector<StoredPath>> {
        std::vector<StoredPath> paths;
        for (const pqxx::row& row :
             tx.exec("SELECT name, preparation_path, hf_repo, "
                     "resolved_revision, deleting FROM catalog.models ORDER "
                     "BY name")) {
          paths.push_back({.name = row[0].as<std::string>(),
                           .path = row[1].as<std::string>(),
                           .hf_repo = row[2].as<std::string>(),
                           .resolved_revision = row[3].as<std::string>(),
                           .deleting = row[4].as<bool>()});
        }
        return paths;
      },
      {.read_only = true});
}

absl::StatusOr<std::map<v1::ModelState, int64_t>> PgModelStore::CountByState() {
  return pool_->Transact<std::map<v1::ModelState, int64_t>>(
      [&](pqxx::work& tx) -> absl::StatusOr<std::map<v1::ModelState, int64_t>> {
        std::map<v1::ModelState, int64_t> counts;
        for (const pqxx::row& row : tx.exec("SELECT state, count(*) FROM "
                                            "catalog.models WHERE NOT deleting "
                                            "GROUP BY state")) {
          counts[static_cast<v1::ModelState>(row[0].as<int>())] =
              row[1].as<int64_t>();
        }
        return counts;
      },
      {.read_only = true});
}

}  // namespace hangar::catalog
