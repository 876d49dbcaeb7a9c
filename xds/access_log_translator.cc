#include "xds/access_log_translator.h"

#include <set>

#include "envoy/extensions/access_loggers/file/v3/file.pb.h"
#include "envoy/extensions/access_loggers/stream/v3/stream.pb.h"

// text_format (SubstitutionFormatString) and format (FileAccessLog) are
// deprecated in Envoy's API but still read by Envoy, so skiff reads them too.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace skiff::xds {

namespace {

namespace accesslog_v3 = envoy::config::accesslog::v3;
namespace core_v3 = envoy::config::core::v3;
namespace file_v3 = envoy::extensions::access_loggers::file::v3;
namespace stream_v3 = envoy::extensions::access_loggers::stream::v3;
using access_log::Formatter;
using access_log::LogFilter;
using Errors = std::vector<std::string>;

// The flags ResponseFlagFilter accepts (the `in` list of its proto).
const std::set<std::string>& knownResponseFlags() {
  static const auto* flags = new std::set<std::string>{
      "LH",   "UH",   "UT",   "LR",   "UR", "UF",  "UC", "UO", "NR",  "DI",
      "FI",   "RL",   "UAEX", "RLSE", "DC", "URX", "SI", "IH", "DPE", "UMSDR",
      "RFCF", "NFCF", "DT",   "UPE",  "NC", "OM",  "DF", "DO", "DR"};
  return *flags;
}

std::unique_ptr<Formatter> formatterOf(const core_v3::SubstitutionFormatString& f,
                                       const std::string& path, Errors& errors) {
  Result<std::unique_ptr<Formatter>> made = configError("");
  std::string where = path;
  switch (f.format_case()) {
    case core_v3::SubstitutionFormatString::kTextFormat:
      where += ".text_format";
      made = Formatter::text(f.text_format(), f.omit_empty_values());
      break;
    case core_v3::SubstitutionFormatString::kTextFormatSource: {
      const core_v3::DataSource& source = f.text_format_source();
      if (source.specifier_case() == core_v3::DataSource::kInlineString) {
        where += ".text_format_source.inline_string";
        made = Formatter::text(source.inline_string(), f.omit_empty_values());
      } else if (source.specifier_case() == core_v3::DataSource::kInlineBytes) {
        where += ".text_format_source.inline_bytes";
        made = Formatter::text(source.inline_bytes(), f.omit_empty_values());
      } else {
        errors.push_back(path +
                         ".text_format_source: only inline_string and inline_bytes are supported");
        return nullptr;
      }
      break;
    }
    case core_v3::SubstitutionFormatString::kJsonFormat:
      made = Formatter::json(f.json_format(), f.omit_empty_values());
      // The formatter's errors start with "json_format.<key>".
      if (!made) {
        errors.push_back(path + "." + made.status().message());
        return nullptr;
      }
      break;
    default:
      made = Formatter::text(Formatter::kDefaultFormat, f.omit_empty_values());
      break;
  }
  if (!made) {
    errors.push_back(where + ": " + made.status().message());
    return nullptr;
  }
  return std::move(*made);
}

bool translateComparison(const accesslog_v3::ComparisonFilter& c, const std::string& path,
                         Errors& errors, LogFilter& out) {
  switch (c.op()) {
    case accesslog_v3::ComparisonFilter::EQ:
      out.op = LogFilter::Op::kEq;
      break;
    case accesslog_v3::ComparisonFilter::GE:
      out.op = LogFilter::Op::kGe;
      break;
    case accesslog_v3::ComparisonFilter::LE:
      out.op = LogFilter::Op::kLe;
      break;
    default:
      errors.push_back(path + ".op: not supported");
      return false;
  }
  if (!c.has_value()) {
    errors.push_back(path + ".value: is required");
    return false;
  }
  // skiff has no runtime: runtime_key never overrides default_value.
  out.value = c.value().default_value();
  return true;
}

bool translateFilter(const accesslog_v3::AccessLogFilter& f, const std::string& path,
                     Errors& errors, LogFilter& out) {
  using F = accesslog_v3::AccessLogFilter;
  switch (f.filter_specifier_case()) {
    case F::kStatusCodeFilter:
      out.kind = LogFilter::Kind::kStatusCode;
      return translateComparison(f.status_code_filter().comparison(),
                                 path + ".status_code_filter.comparison", errors, out);
    case F::kDurationFilter:
      out.kind = LogFilter::Kind::kDuration;
      return translateComparison(f.duration_filter().comparison(),
                                 path + ".duration_filter.comparison", errors, out);
    case F::kNotHealthCheckFilter:
      out.kind = LogFilter::Kind::kNotHealthCheck;
      return true;
    case F::kResponseFlagFilter: {
      out.kind = LogFilter::Kind::kResponseFlag;
      bool ok = true;
      for (int i = 0; i < f.response_flag_filter().flags_size(); ++i) {
        const std::string& flag = f.response_flag_filter().flags(i);
        if (knownResponseFlags().count(flag) == 0) {
          errors.push_back(path + ".response_flag_filter.flags[" + std::to_string(i) + "]: '" +
                           flag + "' is not a response flag");
          ok = false;
        }
        out.flags.push_back(flag);
      }
      return ok;
    }
    case F::kAndFilter:
    case F::kOrFilter: {
      bool is_and = f.filter_specifier_case() == F::kAndFilter;
      out.kind = is_and ? LogFilter::Kind::kAnd : LogFilter::Kind::kOr;
      const auto& list = is_and ? f.and_filter().filters() : f.or_filter().filters();
      const std::string p = path + (is_and ? ".and_filter.filters" : ".or_filter.filters");
      if (list.size() < 2) {
        errors.push_back(p + ": needs at least 2 filters");
        return false;
      }
      bool ok = true;
      for (int i = 0; i < list.size(); ++i) {
        LogFilter child;
        ok = translateFilter(list.Get(i), p + "[" + std::to_string(i) + "]", errors, child) && ok;
        out.children.push_back(std::move(child));
      }
      return ok;
    }
    default:
      // The unsupported-field check names the others first; this is a backstop.
      errors.push_back(path + ": this filter is not supported yet");
      return false;
  }
}

}  // namespace

void translateAccessLogs(const google::protobuf::RepeatedPtrField<accesslog_v3::AccessLog>& logs,
                         const std::string& path, Errors& errors,
                         std::vector<std::shared_ptr<const access_log::AccessLog>>& out) {
  for (int i = 0; i < logs.size(); ++i) {
    const accesslog_v3::AccessLog& log = logs.Get(i);
    const std::string p = path + "[" + std::to_string(i) + "]";
    const std::string tp = p + ".typed_config";
    std::optional<LogFilter> filter;
    if (log.has_filter()) {
      LogFilter f;
      if (!translateFilter(log.filter(), p + ".filter", errors, f)) continue;
      filter = std::move(f);
    }
    std::unique_ptr<Formatter> formatter;
    std::shared_ptr<access_log::LogFile> file;
    const auto& any = log.typed_config();
    if (!log.has_typed_config()) {
      errors.push_back(tp + ": is required (envoy.access_loggers.file, stdout or stderr)");
      continue;
    }
    if (any.Is<file_v3::FileAccessLog>()) {
      file_v3::FileAccessLog config;
      any.UnpackTo(&config);
      if (config.path().empty()) {
        errors.push_back(tp + ".path: is required");
        continue;
      }
      if (config.has_log_format()) {
        formatter = formatterOf(config.log_format(), tp + ".log_format", errors);
      } else {
        auto made =
            Formatter::text(config.access_log_format_case() == file_v3::FileAccessLog::kFormat
                                ? std::string_view(config.format())
                                : Formatter::kDefaultFormat,
                            false);
        if (!made) {
          errors.push_back(tp + ".format: " + made.status().message());
        } else {
          formatter = std::move(*made);
        }
      }
      if (!formatter) continue;
      auto opened = access_log::LogFile::open(config.path());
      if (!opened) {
        errors.push_back(tp + ".path: " + opened.status().message());
        continue;
      }
      file = *opened;
    } else if (any.Is<stream_v3::StdoutAccessLog>() || any.Is<stream_v3::StderrAccessLog>()) {
      bool err = any.Is<stream_v3::StderrAccessLog>();
      core_v3::SubstitutionFormatString format;
      if (err) {
        stream_v3::StderrAccessLog config;
        any.UnpackTo(&config);
        format = config.log_format();
      } else {
        stream_v3::StdoutAccessLog config;
        any.UnpackTo(&config);
        format = config.log_format();
      }
      formatter = formatterOf(format, tp + ".log_format", errors);
      if (!formatter) continue;
      file = access_log::LogFile::standardStream(err ? 2 : 1);
    } else {
      errors.push_back(tp + ": type URL '" + any.type_url() + "' is not supported yet");
      continue;
    }
    out.push_back(std::make_shared<const access_log::AccessLog>(
        std::move(formatter), std::move(file), std::move(filter)));
  }
}

}  // namespace skiff::xds
