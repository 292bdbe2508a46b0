#include "core/nn/transformer_layer_options.h"

namespace dtrain::nn {

void check_layer_options(const char* layer, const TransformerLayerOptions& options) {
  DTRAIN_CHECK(options.dropout >= 0.0 && options.dropout < 1.0, layer, ": dropout ",
               options.dropout, " must be in [0, 1)");
}

}  // namespace dtrain::nn
