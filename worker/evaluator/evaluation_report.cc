// Report renderings; see evaluation_report.h.
#include "worker/evaluator/evaluation_report.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "worker/model/png_writer.h"

namespace lft {
namespace {

constexpr char kFormat[] = "lft-eval-report-1";

std::string Upper(const std::string& s) { return absl::AsciiStrToUpper(s); }

// The row the candidate must beat: the skip row removing as many layers
// (the teacher when the block is a single layer, nothing removed).
const EvaluationRow* EqualRemovalReference(const EvaluationReport& r) {
  const int64_t removed = r.end_layer - r.first_layer - 1;
  if (removed == 0) return r.Find("teacher");
  return r.Find("skip", removed);
}

const EvaluationRow* Candidate(const EvaluationReport& r) {
  const EvaluationRow* best = r.BestFlowRow();
  if (best != nullptr) return best;
  if (r.method == "regression") return r.Find("regression");
  return nullptr;
}

void DashedLine(RgbImage* img, double x0, double y0, double x1, double y1,
                uint8_t r, uint8_t g, uint8_t b) {
  const double len = std::hypot(x1 - x0, y1 - y0);
  const int pieces = std::max(1, static_cast<int>(len / 6));
  for (int i = 0; i < pieces; i += 2) {
    const double f0 = static_cast<double>(i) / pieces;
    const double f1 = static_cast<double>(i + 1) / pieces;
    img->Line(x0 + f0 * (x1 - x0), y0 + f0 * (y1 - y0), x0 + f1 * (x1 - x0),
              y0 + f1 * (y1 - y0), r, g, b);
  }
}

// JSON null for NaN ("not measured"); nlohmann would write null anyway,
// this says so.
nlohmann::json MaybeNumber(double v) {
  return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v);
}

// A field that reports of earlier versions lack: NaN when absent or null.
double OptionalNumber(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return it->get<double>();
}

}  // namespace

std::string EvaluationRow::Label() const {
  if (method == "skip") return absl::StrCat("skip-", skip);
  if (is_flow()) return absl::StrCat(Upper(method), " k=", k, " ", solver);
  return method;
}

const EvaluationRow* EvaluationReport::Find(const std::string& m, int64_t k,
                                            const std::string& solver) const {
  for (const EvaluationRow& r : rows) {
    const int64_t rk = r.method == "skip" ? r.skip : r.k;
    if (r.method == m && rk == k && r.solver == solver) return &r;
  }
  return nullptr;
}

const EvaluationRow* EvaluationReport::BestFlowRow() const {
  const EvaluationRow* best = nullptr;
  for (const EvaluationRow& r : rows) {
    if (!r.is_flow()) continue;
    if (best == nullptr || r.kl_pq < best->kl_pq ||
        (r.kl_pq == best->kl_pq && r.nfe < best->nfe)) {
      best = &r;
    }
  }
  return best;
}

std::string EvaluationReport::Verdict() const {
  const EvaluationRow* cand = Candidate(*this);
  const EvaluationRow* ref = EqualRemovalReference(*this);
  const int64_t removed = end_layer - first_layer - 1;
  if (cand == nullptr || ref == nullptr) {
    return "No comparison at equal layers removed: the report lacks the "
           "trained layer's rows or the matching skip row.";
  }
  std::string who = cand->is_flow()
                        ? absl::StrFormat(
                              "At its best setting (k=%d, %s, %d NFE) the %s "
                              "flow layer",
                              cand->k, cand->solver, cand->nfe, Upper(method))
                        : std::string("The regression layer");
  std::string against =
      removed == 0 ? std::string(
                         "the teacher (the block is one layer, so nothing is "
                         "removed)")
                   : absl::StrFormat("skip-%d (%d layer%s removed by each)",
                                     removed, removed, removed == 1 ? "" : "s");
  const bool kl = cand->kl_pq < ref->kl_pq;
  const bool ppl = cand->ppl < ref->ppl;
  const std::string kl_nums =
      absl::StrFormat("KL_PQ (%.4f vs %.4f)", cand->kl_pq, ref->kl_pq);
  const std::string ppl_nums =
      absl::StrFormat("PPL (%.3f vs %.3f)", cand->ppl, ref->ppl);
  if (kl && ppl) {
    return absl::StrCat(who, " beats ", against, " on both ", kl_nums, " and ",
                        ppl_nums, ".");
  }
  if (!kl && !ppl) {
    return absl::StrCat(who, " does not beat ", against, " on ", kl_nums,
                        " nor on ", ppl_nums, ".");
  }
  return absl::StrCat(who, " beats ", against, " on ", kl ? kl_nums : ppl_nums,
                      " but not on ", kl ? ppl_nums : kl_nums, ".");
}

std::string EvaluationReport::ToJson() const {
  nlohmann::json j;
  j["format"] = kFormat;
  j["job"] = job;
  j["checkpoint"] = checkpoint;
  j["teacher"] = teacher;
  j["num_layers"] = num_layers;
  j["block"] = {{"first_layer", first_layer}, {"end_layer", end_layer}};
  j["method"] = method;
  j["checkpoint_step"] = checkpoint_step;
  j["checkpoint_tokens"] = checkpoint_tokens;
  j["losses"] = losses;
  j["heldout"] = {{"files", heldout_files},
                  {"sequence_length", sequence_length},
                  {"sequences", heldout_sequences},
                  {"tokens", heldout_tokens},
                  {"predicted_tokens", predicted_tokens}};
  j["teacher_perplexity"] = teacher_ppl;
  j["block_signals"] = {{"angular_distance", angular_distance},
                        {"block_influence", block_influence},
                        {"recoupling_ratio", recoupling_ratio},
                        {"recoupling_tokens", recoupling_tokens}};
  j["regression"] = {{"steps", regression_steps},
                     {"final_loss", regression_final_loss}};
  j["regression_tokens"] = regression_tokens;
  j["linear_tokens"] = linear_tokens;
  nlohmann::json rs = nlohmann::json::array();
  for (const EvaluationRow& r : rows) {
    rs.push_back({{"method", r.method},
                  {"label", r.Label()},
                  {"solver", r.solver},
                  {"layers_removed", r.layers_removed},
                  {"skip", r.skip},
                  {"k", r.k},
                  {"nfe", r.nfe},
                  {"kl_x", r.kl_x},
                  {"kl_x_softmax", MaybeNumber(r.kl_x_softmax)},
                  {"kl_x_lens", MaybeNumber(r.kl_x_lens)},
                  {"nmse", r.nmse},
                  {"kl_pq", r.kl_pq},
                  {"ppl", r.ppl}});
  }
  j["rows"] = rs;
  nlohmann::json curve_json = nlohmann::json::array();
  for (const CurvePoint& c : curve) {
    curve_json.push_back({{"checkpoint", c.checkpoint},
                          {"step", c.step},
                          {"tokens", c.tokens},
                          {"k", c.k},
                          {"solver", c.solver},
                          {"nmse", c.nmse},
                          {"nmse_k1", c.nmse_k1},
                          {"kl_x_softmax", c.kl_x_softmax}});
  }
  j["curve"] = curve_json;
  j["verdict"] = Verdict();
  return j.dump(2) + "\n";
}

absl::StatusOr<EvaluationReport> ParseEvaluationReport(absl::string_view text) {
  nlohmann::json j = nlohmann::json::parse(std::string(text), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("evaluation report: not a JSON object");
  }
  if (j.value("format", "") != kFormat) {
    return absl::InvalidArgumentError(
        absl::StrCat("evaluation report: \"format\" is not \"", kFormat, "\""));
  }
  EvaluationReport r;
  try {
    r.job = j.at("job").get<std::string>();
    r.checkpoint = j.at("checkpoint").get<std::string>();
    r.teacher = j.at("teacher").get<std::string>();
    r.num_layers = j.at("num_layers").get<int64_t>();
    r.first_layer = j.at("block").at("first_layer").get<int64_t>();
    r.end_layer = j.at("block").at("end_layer").get<int64_t>();
    r.method = j.at("method").get<std::string>();
    r.checkpoint_step = j.at("checkpoint_step").get<uint64_t>();
    r.checkpoint_tokens = j.at("checkpoint_tokens").get<uint64_t>();
    r.losses = j.at("losses").get<std::vector<double>>();
    const auto& h = j.at("heldout");
    r.heldout_files = h.at("files").get<std::vector<std::string>>();
    r.sequence_length = h.at("sequence_length").get<int64_t>();
    r.heldout_sequences = h.at("sequences").get<int64_t>();
    r.heldout_tokens = h.at("tokens").get<int64_t>();
    r.predicted_tokens = h.at("predicted_tokens").get<int64_t>();
    r.teacher_ppl = j.at("teacher_perplexity").get<double>();
    const auto& b = j.at("block_signals");
    r.angular_distance = b.at("angular_distance").get<double>();
    r.block_influence = b.at("block_influence").get<double>();
    r.recoupling_ratio = b.at("recoupling_ratio").get<double>();
    r.recoupling_tokens = b.at("recoupling_tokens").get<int64_t>();
    r.regression_steps = j.at("regression").at("steps").get<int64_t>();
    r.regression_final_loss = j.at("regression").at("final_loss").get<double>();
    // Fields added after the first reports: absent in older ones.
    r.regression_tokens = j.value("regression_tokens", int64_t{0});
    r.linear_tokens = j.value("linear_tokens", int64_t{0});
    for (const auto& x : j.at("rows")) {
      EvaluationRow row;
      row.method = x.at("method").get<std::string>();
      row.solver = x.at("solver").get<std::string>();
      row.layers_removed = x.at("layers_removed").get<int64_t>();
      row.skip = x.at("skip").get<int64_t>();
      row.k = x.at("k").get<int64_t>();
      row.nfe = x.at("nfe").get<int64_t>();
      row.kl_x = x.at("kl_x").get<double>();
      row.kl_x_softmax = OptionalNumber(x, "kl_x_softmax");
      row.kl_x_lens = OptionalNumber(x, "kl_x_lens");
      row.nmse = x.at("nmse").get<double>();
      row.kl_pq = x.at("kl_pq").get<double>();
      row.ppl = x.at("ppl").get<double>();
      r.rows.push_back(row);
    }
    if (auto it = j.find("curve"); it != j.end()) {
      for (const auto& x : *it) {
        CurvePoint c;
        c.checkpoint = x.at("checkpoint").get<std::string>();
        c.step = x.at("step").get<uint64_t>();
        c.tokens = x.at("tokens").get<uint64_t>();
        c.k = x.at("k").get<int64_t>();
        c.solver = x.at("solver").get<std::string>();
        c.nmse = OptionalNumber(x, "nmse");
        c.nmse_k1 = OptionalNumber(x, "nmse_k1");
        c.kl_x_softmax = OptionalNumber(x, "kl_x_softmax");
        r.curve.push_back(c);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("evaluation report: ", e.what()));
  }
  return r;
}

std::string EvaluationReport::ToMarkdown() const {
  std::string s = absl::StrFormat(
      "# Evaluation of checkpoint `%s` (job `%s`)\n\n"
      "Teacher `%s` (%d layers); block [%d, %d) replaced by one %s layer "
      "(checkpoint step %d, %d training tokens). Held-out text: %d "
      "sequences of %d tokens (%d valid tokens, %d predicted) from %s.\n\n",
      checkpoint, job, teacher, num_layers, first_layer, end_layer,
      Upper(method), checkpoint_step, checkpoint_tokens, heldout_sequences,
      sequence_length, heldout_tokens, predicted_tokens,
      absl::StrJoin(heldout_files, ", ",
                    [](std::string* out, const std::string& f) {
                      absl::StrAppend(out, "`", f, "`");
                    }));
  s += "| method | layers removed | k | NFE | KL_x | KL_x softmax | KL_x lens "
       "| NMSE | KL_PQ | PPL |\n";
  s += "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const EvaluationRow& r : rows) {
    const bool teacher_row = r.method == "teacher";
    auto num = [&](double v) {
      return teacher_row || std::isnan(v) ? std::string("-")
                                          : absl::StrFormat("%.4f", v);
    };
    absl::StrAppendFormat(
        &s, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %.3f |\n",
        r.Label(), r.layers_removed, r.k ? absl::StrCat(r.k) : "-",
        r.nfe ? absl::StrCat(r.nfe) : "-", num(r.kl_x), num(r.kl_x_softmax),
        num(r.kl_x_lens), num(r.nmse), num(r.kl_pq), r.ppl);
  }
  absl::StrAppend(&s, "\n", Verdict(), "\n");
  absl::StrAppendFormat(
      &s,
      "\nBlock signals of [%d, %d) on the held-out text: angular distance "
      "%.4f, block influence (1 - cos) %.4f, recoupling ratio %.4f (exact "
      "assignment over %d tokens).\n",
      first_layer, end_layer, angular_distance, block_influence,
      recoupling_ratio, recoupling_tokens);
  if (regression_steps > 0) {
    absl::StrAppendFormat(&s,
                          "\nRegression baseline: %d AdamW steps on the job's "
                          "stored pairs (%d tokens), final training loss "
                          "%.6g.\n",
                          regression_steps, regression_tokens,
                          regression_final_loss);
  }
  if (linear_tokens > 0) {
    absl::StrAppendFormat(&s,
                          "\nLinear baseline: least-squares affine map "
                          "fitted on %d tokens of the job's stored pairs.\n",
                          linear_tokens);
  }
  if (!curve.empty()) {
    s += "\nTraining curve (held-out block pairs only):\n\n"
         "| checkpoint | step | tokens | k | solver | NMSE | NMSE k=1 | "
         "KL_x softmax |\n|---|---|---|---|---|---|---|---|\n";
    for (const CurvePoint& c : curve) {
      absl::StrAppendFormat(
          &s, "| %s | %d | %d | %d | %s | %.4f | %.4f | %.4f |\n", c.checkpoint,
          c.step, c.tokens, c.k, c.solver.empty() ? "-" : c.solver, c.nmse,
          c.nmse_k1, c.kl_x_softmax);
    }
  }
  return s;
}

absl::StatusOr<std::string> RenderLossPlot(const EvaluationReport& report) {
  if (report.losses.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint ", report.checkpoint, " has no loss curve"));
  }
  RgbImage img(640, 400);
  PlotArea a;
  a.left = 80;
  a.top = 40;
  a.width = 520;
  a.height = 300;
  a.x_min = 1;
  a.x_max = std::max<double>(2, static_cast<double>(report.losses.size()));
  double lo = report.losses[0], hi = report.losses[0];
  for (double l : report.losses) {
    if (!std::isfinite(l)) continue;
    lo = std::min(lo, l);
    hi = std::max(hi, l);
  }
  a.y_min = std::min(0.0, lo);
  a.y_max = hi > a.y_min ? hi * 1.05 : a.y_min + 1;
  DrawAxes(&img, a, "step", "training loss");
  img.Text(a.left + 120, 8,
           absl::StrCat(Upper(report.method), " block [", report.first_layer,
                        ", ", report.end_layer, ") job ", report.job),
           0, 0, 0);
  for (size_t i = 1; i < report.losses.size(); ++i) {
    if (!std::isfinite(report.losses[i - 1]) ||
        !std::isfinite(report.losses[i]))
      continue;
    img.Line(a.X(static_cast<double>(i)), a.Y(report.losses[i - 1]),
             a.X(static_cast<double>(i + 1)), a.Y(report.losses[i]), 31, 119,
             180);
  }
  if (report.losses.size() == 1) {
    img.Dot(a.X(1), a.Y(report.losses[0]), 3, 31, 119, 180);
  }
  return img.EncodePng();
}

namespace {

// Log-scale y axis: a tick and label 10^d for every decade d in [lo, hi]
// (area.Y takes log10 values), light grid lines between the ends.
void DrawDecadeTicks(RgbImage* img, const PlotArea& a, int lo, int hi) {
  for (int d = lo; d <= hi; ++d) {
    const double py = a.Y(d);
    img->Line(a.left - 4, py, a.left, py, 0, 0, 0);
    if (d > lo && d < hi) {
      img->Line(a.left + 1, py, a.left + a.width - 1, py, 225, 225, 225);
    }
    const std::string label = absl::StrFormat("%g", std::pow(10.0, d));
    img->Text(a.left - 7 - RgbImage::TextWidth(label), static_cast<int>(py) - 3,
              label, 0, 0, 0);
  }
}

}  // namespace

// Two panels, KL_PQ and KL_x, each KL against k on a log10 y axis: the
// skip baselines sit one or two decades above the flow curves, which a
// linear axis squeezes flat, and KL_x often equals KL_PQ to three digits,
// so one panel each keeps both visible. Values below kKlFloor are drawn at
// the floor (log of 0).
absl::StatusOr<std::string> RenderKlPlot(const EvaluationReport& report) {
  constexpr double kKlFloor = 1e-6;
  std::map<std::string, std::vector<const EvaluationRow*>> by_solver;
  int64_t k_min = 0, k_max = 0;
  double lo = 0, hi = 0;
  bool any = false;
  auto widen = [&](double v) {
    const double l = std::log10(std::max(v, kKlFloor));
    lo = any ? std::min(lo, l) : l;
    hi = any ? std::max(hi, l) : l;
    any = true;
  };
  for (const EvaluationRow& r : report.rows) {
    if (!r.is_flow()) continue;
    by_solver[r.solver].push_back(&r);
    k_min = k_min == 0 ? r.k : std::min(k_min, r.k);
    k_max = std::max(k_max, r.k);
    widen(r.kl_pq);
    widen(r.kl_x);
  }
  if (by_solver.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("report of checkpoint ", report.checkpoint,
                     " has no flow rows to plot against k"));
  }
  std::vector<const EvaluationRow*> levels;
  for (const EvaluationRow& r : report.rows) {
    if (r.method == "skip" || (r.method == "regression" && !r.is_flow())) {
      levels.push_back(&r);
      widen(r.kl_pq);
      widen(r.kl_x);
    }
  }
  const int decade_lo = static_cast<int>(std::floor(lo));
  const int decade_hi =
      std::max(decade_lo + 1, static_cast<int>(std::ceil(hi)));
  RgbImage img(1000, 420);
  img.Text(70, 8,
           absl::StrCat(Upper(report.method), " block [", report.first_layer,
                        ", ", report.end_layer,
                        "): KL against solver steps k (log scale)"),
           0, 0, 0);
  static constexpr uint8_t kSolverColors[][3] = {
      {31, 119, 180}, {214, 39, 40}, {148, 103, 189}};
  for (auto& [solver, rows] : by_solver) {
    std::sort(rows.begin(), rows.end(),
              [](const EvaluationRow* x, const EvaluationRow* y) {
                return x->k < y->k;
              });
  }
  auto level_color = [](const EvaluationRow* r, uint8_t* c) {
    const bool reg = r->method == "regression";
    const uint8_t shade =
        reg ? 0
            : static_cast<uint8_t>(std::min<int64_t>(60 + 30 * r->skip, 200));
    c[0] = shade;
    c[1] = reg ? 160 : shade;
    c[2] = shade;
  };
  auto panel = [&](int left, const std::string& name,
                   double EvaluationRow::*metric) {
    PlotArea a;
    a.left = left;
    a.top = 40;
    a.width = 300;
    a.height = 300;
    a.x_min = static_cast<double>(k_min == k_max ? k_min - 1 : k_min);
    a.x_max = static_cast<double>(k_min == k_max ? k_max + 1 : k_max);
    a.y_min = decade_lo;
    a.y_max = decade_hi;
    const int span = static_cast<int>(a.x_max - a.x_min);
    DrawAxes(&img, a, "k (solver steps)", name, span <= 12 ? span + 1 : 5,
             /*y_ticks=*/0);
    DrawDecadeTicks(&img, a, decade_lo, decade_hi);
    auto y_of = [&](double v) {
      return a.Y(std::log10(std::max(v, kKlFloor)));
    };
    size_t ci = 0;
    for (const auto& [solver, rows] : by_solver) {
      const uint8_t* c = kSolverColors[std::min<size_t>(ci++, 2)];
      for (size_t i = 0; i < rows.size(); ++i) {
        const double x = a.X(static_cast<double>(rows[i]->k));
        img.Dot(x, y_of(rows[i]->*metric), 3, c[0], c[1], c[2]);
        if (i == 0) continue;
        const double xp = a.X(static_cast<double>(rows[i - 1]->k));
        img.Line(xp, y_of(rows[i - 1]->*metric), x, y_of(rows[i]->*metric),
                 c[0], c[1], c[2]);
      }
    }
    for (const EvaluationRow* r : levels) {
      uint8_t c[3];
      level_color(r, c);
      const double y = y_of(r->*metric);
      DashedLine(&img, a.left + 1, y, a.left + a.width - 1, y, c[0], c[1],
                 c[2]);
    }
  };
  panel(70, "KL_PQ", &EvaluationRow::kl_pq);
  panel(440, "KL_x", &EvaluationRow::kl_x);
  int legend_y = 40;
  const int legend_x = 770;
  size_t ci = 0;
  for (const auto& [solver, rows] : by_solver) {
    const uint8_t* c = kSolverColors[std::min<size_t>(ci++, 2)];
    img.Line(legend_x, legend_y + 3, legend_x + 24, legend_y + 3, c[0], c[1],
             c[2]);
    img.Dot(legend_x + 12, legend_y + 3, 3, c[0], c[1], c[2]);
    img.Text(legend_x + 30, legend_y, absl::StrCat("flow, ", solver), 0, 0, 0);
    legend_y += 14;
  }
  for (const EvaluationRow* r : levels) {
    uint8_t c[3];
    level_color(r, c);
    DashedLine(&img, legend_x, legend_y + 3, legend_x + 24, legend_y + 3, c[0],
               c[1], c[2]);
    img.Text(legend_x + 30, legend_y,
             absl::StrFormat("%s %.3g / %.3g", r->Label(), r->kl_pq, r->kl_x),
             0, 0, 0);
    legend_y += 14;
  }
  img.Text(legend_x, legend_y + 6, "(levels: KL_PQ / KL_x)", 0, 0, 0);
  return img.EncodePng();
}

// NMSE against training tokens on a log10 y axis (NMSE falls by decades
// over training), x linear in tokens as the paper's Figure 4. Two lines:
// the k-step NMSE (the training k) and one step of the same solver. Values
// below kNmseFloor are drawn at the floor.
absl::StatusOr<std::string> RenderCurvePlot(const EvaluationReport& report) {
  constexpr double kNmseFloor = 1e-8;
  if (report.curve.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "report of checkpoint ", report.checkpoint, " has no training curve"));
  }
  std::vector<CurvePoint> points = report.curve;
  std::sort(points.begin(), points.end(),
            [](const CurvePoint& a, const CurvePoint& b) {
              return a.tokens < b.tokens;
            });
  double lo = 0, hi = 0;
  bool any = false;
  for (const CurvePoint& c : points) {
    for (double v : {c.nmse, c.nmse_k1}) {
      if (!std::isfinite(v)) continue;
      const double l = std::log10(std::max(v, kNmseFloor));
      lo = any ? std::min(lo, l) : l;
      hi = any ? std::max(hi, l) : l;
      any = true;
    }
  }
  const int decade_lo = static_cast<int>(std::floor(lo));
  const int decade_hi =
      std::max(decade_lo + 1, static_cast<int>(std::ceil(hi)));
  RgbImage img(760, 420);
  PlotArea a;
  a.left = 80;
  a.top = 40;
  a.width = 460;
  a.height = 300;
  const double t_min = static_cast<double>(points.front().tokens);
  const double t_max = static_cast<double>(points.back().tokens);
  a.x_min = t_min == t_max ? t_min - 1 : t_min;
  a.x_max = t_min == t_max ? t_max + 1 : t_max;
  a.y_min = decade_lo;
  a.y_max = decade_hi;
  DrawAxes(&img, a, "training tokens", "held-out NMSE", 5, /*y_ticks=*/0);
  DrawDecadeTicks(&img, a, decade_lo, decade_hi);
  img.Text(a.left, 8,
           absl::StrCat(Upper(report.method), " block [", report.first_layer,
                        ", ", report.end_layer,
                        "): held-out NMSE against training tokens (log scale)"),
           0, 0, 0);
  auto y_of = [&](double v) {
    return a.Y(std::log10(std::max(v, kNmseFloor)));
  };
  static constexpr uint8_t kColors[][3] = {{31, 119, 180}, {255, 127, 14}};
  auto line = [&](double CurvePoint::*metric, const uint8_t* c) {
    for (size_t i = 0; i < points.size(); ++i) {
      const double v = points[i].*metric;
      if (!std::isfinite(v)) continue;
      const double x = a.X(static_cast<double>(points[i].tokens));
      img.Dot(x, y_of(v), 3, c[0], c[1], c[2]);
      if (i == 0 || !std::isfinite(points[i - 1].*metric)) continue;
      img.Line(a.X(static_cast<double>(points[i - 1].tokens)),
               y_of(points[i - 1].*metric), x, y_of(v), c[0], c[1], c[2]);
    }
  };
  line(&CurvePoint::nmse, kColors[0]);
  line(&CurvePoint::nmse_k1, kColors[1]);
  const int legend_x = 560;
  const CurvePoint& last = points.back();
  const std::string solver = last.solver.empty() ? "block" : last.solver;
  const std::string names[2] = {absl::StrCat("k=", last.k, " ", solver),
                                absl::StrCat("k=1 ", solver)};
  for (int i = 0; i < 2; ++i) {
    const int y = 40 + 14 * i;
    img.Line(legend_x, y + 3, legend_x + 24, y + 3, kColors[i][0],
             kColors[i][1], kColors[i][2]);
    img.Dot(legend_x + 12, y + 3, 3, kColors[i][0], kColors[i][1],
            kColors[i][2]);
    img.Text(legend_x + 30, y, names[i], 0, 0, 0);
  }
  img.Text(
      legend_x, 40 + 14 * 2 + 6,
      absl::StrCat(points.size(), " checkpoint", points.size() == 1 ? "" : "s"),
      0, 0, 0);
  return img.EncodePng();
}

}  // namespace lft
