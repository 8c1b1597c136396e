// The token file's format (--auth_token_file, `nokv stats --token_file`): one
// token per line, surrounding blanks ignored, blank lines and lines starting
// with '#' skipped. Shared by the server (auth.h) and the nokv-remote client.
#ifndef NOKV_SERVICE_TOKEN_FILE_H
#define NOKV_SERVICE_TOKEN_FILE_H

#include <string>
#include <vector>

namespace nokv::service {

inline std::vector<std::string> ParseTokens(const std::string& text) {
  std::vector<std::string> tokens;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    size_t b = text.find_first_not_of(" \t\r", pos);
    if (b < end && text[b] != '#') {
      size_t e = text.find_last_not_of(" \t\r", end - 1);
      tokens.push_back(text.substr(b, e - b + 1));
    }
    pos = end + 1;
  }
  return tokens;
}

}  // namespace nokv::service

#endif  // NOKV_SERVICE_TOKEN_FILE_H
